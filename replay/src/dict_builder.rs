//! Dictionary columns built from typed values: each distinct value of a batch is turned
//! into text once (an address formatted, say), where Arrow's string dictionary builder
//! would format and hash the text of every row.

use std::hash::Hash;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Int32Array};
use arrow_schema::ArrowError;
use hashbrown::HashMap;

/// Rows a batch of typed dictionary columns may hold: at most one distinct value per row,
/// and keys are 32-bit.
pub(crate) const MAX_ROWS: usize = i32::MAX as usize;

/// A `Dictionary(Int32, Utf8)` column under construction.
pub(crate) struct TypedDict<V> {
    keys_of: HashMap<V, i32>,
    keys: Vec<i32>,
    values: StringBuilder,
}

impl<V> Default for TypedDict<V> {
    fn default() -> Self {
        TypedDict { keys_of: HashMap::new(), keys: Vec::new(), values: StringBuilder::new() }
    }
}

impl<V: Hash + Eq> TypedDict<V> {
    /// Appends a row; `text` renders the value the first time the batch sees it. The
    /// caller keeps batches under [`MAX_ROWS`] rows, so keys cannot overflow.
    pub(crate) fn append<T: AsRef<str>>(&mut self, value: V, text: impl FnOnce(&V) -> T) {
        let next = i32::try_from(self.keys_of.len()).unwrap_or(i32::MAX);
        let key = *self.keys_of.entry(value).or_insert_with_key(|value| {
            self.values.append_value(text(value));
            next
        });
        self.keys.push(key);
    }

    /// The column, and an empty builder for the next batch.
    pub(crate) fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        self.keys_of.clear();
        let keys = Int32Array::from(std::mem::take(&mut self.keys));
        let array = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(self.values.finish()))?;
        Ok(Arc::new(array))
    }
}

//! The ids the engine gives its nodes and edges, apart so the connection table can hold
//! them without depending on the engine.

/// A node's id: stable while the engine holds the node; once it is forgotten (see
/// `map_retention`) the id may be given to another.
pub type EntityId = u32;
/// An edge's id, stable like [`EntityId`].
pub type EdgeId = u32;

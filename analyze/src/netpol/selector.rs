//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), as NetworkPolicies
//! use them for pods and namespaces.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A label selector as a NetworkPolicy document writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct LabelSelector {
    match_labels: Option<BTreeMap<String, String>>,
    match_expressions: Option<Vec<Requirement>>,
}

/// One `matchExpressions` item.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Requirement {
    key: String,
    operator: String,
    values: Option<Vec<String>>,
}

/// A label selector; the empty one selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<(String, Operator)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Operator {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

impl Selector {
    /// The selector that selects everything (`{}`).
    pub fn everything() -> Self {
        Selector::default()
    }

    /// `matchLabels` only.
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Selector {
            requirements: pairs.into_iter().map(|(k, v)| (k.to_owned(), Operator::In(vec![v.to_owned()]))).collect(),
        }
    }

    pub(super) fn from_doc(doc: &LabelSelector) -> Result<Self, String> {
        let mut requirements: Vec<(String, Operator)> =
            doc.match_labels.iter().flatten().map(|(k, v)| (k.clone(), Operator::In(vec![v.clone()]))).collect();
        for expression in doc.match_expressions.iter().flatten() {
            let values = expression.values.clone().unwrap_or_default();
            let operator = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!("selector on `{}`: {} needs values", expression.key, expression.operator))
                }
                "In" => Operator::In(values),
                "NotIn" => Operator::NotIn(values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!("selector on `{}`: {} takes no values", expression.key, expression.operator))
                }
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(format!(
                        "selector on `{}`: unknown operator `{other}` (In, NotIn, Exists or DoesNotExist)",
                        expression.key
                    ))
                }
            };
            requirements.push((expression.key.clone(), operator));
        }
        Ok(Selector { requirements })
    }

    /// Whether the selector selects an object with these labels (every requirement holds).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|(key, operator)| match operator {
            Operator::In(values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Operator::NotIn(values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Operator::Exists => labels.contains_key(key),
            Operator::DoesNotExist => !labels.contains_key(key),
        })
    }

    /// Whether it selects everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }
}

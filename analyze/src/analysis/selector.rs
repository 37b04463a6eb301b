//! Selectors: which services a policy rule, or a declared entry point, is about, and
//! the glob their strings are matched with.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IntoDeserializer, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::topology::{NodeKind, Service, ServiceType};

/// Which services a rule is about. Every key given must match; a key with a list
/// matches when any item does. Strings are globs where `*` matches any text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Selector {
    /// Namespace (`external` for addresses outside the cluster).
    pub namespace: Option<OneOrMany<String>>,
    /// Service name, or `namespace/name` id when it contains a `/`.
    pub service: Option<OneOrMany<String>>,
    /// Labels that must all be present with a matching value.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Detected type (`database`, `cache`, `queue`, `api`, `proxy`, `other`).
    #[serde(rename = "type")]
    pub service_type: Option<OneOrMany<ServiceType>>,
    /// Kind (`service`, `workload`, `external`, `node`).
    pub kind: Option<OneOrMany<NodeKind>>,
    /// DNS name of an external address.
    pub dns_name: Option<OneOrMany<String>>,
}

/// One value or a list of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            // Going through the item's own deserializer keeps its error messages
            // ("unknown variant `databse`, expected one of ...").
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                T::deserialize(value.into_deserializer()).map(|item| OneOrMany(vec![item]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
}

impl Selector {
    /// Whether a service matches.
    pub fn matches(&self, id: &str, service: &Service) -> bool {
        let any_glob = |patterns: &Option<OneOrMany<String>>, text: &str| {
            patterns.as_ref().is_none_or(|OneOrMany(patterns)| patterns.iter().any(|p| glob(p, text)))
        };
        any_glob(&self.namespace, &service.namespace)
            && self.service.as_ref().is_none_or(|OneOrMany(patterns)| {
                patterns.iter().any(|p| if p.contains('/') { glob(p, id) } else { glob(p, &service.name) })
            })
            && self.labels.iter().all(|(key, pattern)| service.labels.get(key).is_some_and(|v| glob(pattern, v)))
            && self.service_type.as_ref().is_none_or(|OneOrMany(types)| types.contains(&service.service_type))
            && self.kind.as_ref().is_none_or(|OneOrMany(kinds)| kinds.contains(&service.kind))
            && self.dns_name.as_ref().is_none_or(|OneOrMany(patterns)| {
                service.dns_name.as_deref().is_some_and(|name| patterns.iter().any(|p| glob(p, name)))
            })
    }
}

impl fmt::Display for Selector {
    /// `namespace=prod type=database`, `any service` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let mut push = |key: &str, values: Vec<String>| parts.push(format!("{key}={}", values.join("|")));
        if let Some(OneOrMany(values)) = &self.namespace {
            push("namespace", values.clone());
        }
        if let Some(OneOrMany(values)) = &self.service {
            push("service", values.clone());
        }
        for (key, value) in &self.labels {
            push(&format!("labels.{key}"), vec![value.clone()]);
        }
        if let Some(OneOrMany(values)) = &self.service_type {
            push("type", values.iter().map(|t| t.as_str().to_owned()).collect());
        }
        if let Some(OneOrMany(values)) = &self.kind {
            push("kind", values.iter().map(|k| format!("{k:?}").to_lowercase()).collect());
        }
        if let Some(OneOrMany(values)) = &self.dns_name {
            push("dns_name", values.clone());
        }
        if parts.is_empty() {
            f.write_str("any service")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and how much of the text it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_stars_match_any_text() {
        for (pattern, text) in [("prod", "prod"), ("prod-*", "prod-eu"), ("*", ""), ("*.stripe.com", "api.stripe.com")]
        {
            assert!(glob(pattern, text), "{pattern} {text}");
        }
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(glob("*-db", "orders-db-db"));
        for (pattern, text) in
            [("prod", "production"), ("prod-*", "prod"), ("*.stripe.com", "stripe.com"), ("a*c", "ab")]
        {
            assert!(!glob(pattern, text), "{pattern} {text}");
        }
    }
}

//! Names and ids shaped like the ones Kubernetes makes (UIDs, pod-template hashes,
//! container ids), derived from names so every run of one build gives the same ones.

use std::collections::BTreeMap;

fn hash64(parts: &[&str], salt: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    // DefaultHasher::new() has fixed keys: the same names give the same ids in every
    // run of one build (kubectl JSON snapshots stay stable).
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    salt.hash(&mut hasher);
    parts.hash(&mut hasher);
    hasher.finish()
}

/// A version-4-shaped UUID derived from names, stable across runs.
pub(crate) fn uid(parts: &[&str]) -> String {
    let hex = format!("{:016x}{:016x}", hash64(parts, 1), hash64(parts, 2));
    format!("{}-{}-4{}-a{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

/// `n` characters of Kubernetes' name-suffix alphabet (no vowels, no 0/1/3), as in
/// ReplicaSet pod-template-hashes and generated names.
pub(crate) fn k8s_suffix(seed: &str, n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut value = hash64(&[seed], 3);
    let mut out = String::with_capacity(n);
    for i in 0..n {
        if i % 12 == 11 {
            value = hash64(&[seed], 4 + i as u64);
        }
        out.push(char::from(ALPHABET[(value % ALPHABET.len() as u64) as usize]));
        value /= ALPHABET.len() as u64;
    }
    out
}

/// Hex digits derived from names, for container and image ids.
pub(crate) fn hex_id(parts: &[&str], n: usize) -> String {
    let mut out = String::new();
    let mut salt = 10;
    while out.len() < n {
        out.push_str(&format!("{:016x}", hash64(parts, salt)));
        salt += 1;
    }
    out.truncate(n);
    out
}

/// Labels as a JSON-ready map.
pub(crate) fn labels_json(labels: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(labels.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_shaped() {
        let a = uid(&["x", "y"]);
        assert_eq!(a, uid(&["x", "y"]));
        assert_ne!(a, uid(&["x", "z"]));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        let hash = k8s_suffix("reviews-v1", 10);
        assert_eq!(hash.len(), 10);
        assert!(hash.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)));
        assert_eq!(hex_id(&["c"], 64).len(), 64);
    }
}

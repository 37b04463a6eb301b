//! Reads `kubectl get pods,services,endpointslices -A -o json` output (a v1 List) as
//! Kubernetes object events, the offline stand-in for a live watch.

use std::path::Path;

use serde_json::Value;

use crate::error::{ReplayError, Result};
use crate::event::{ObjectAction, ObjectEvent, ObjectKind, TimeNs};

/// Objects read from a kubectl JSON document, and how many items were skipped.
#[derive(Clone, Debug, Default)]
pub struct KubectlObjects {
    /// One snapshot event per supported object.
    pub events: Vec<ObjectEvent>,
    /// Items of kinds smap does not use (Deployments, ConfigMaps...), skipped.
    pub skipped: u64,
}

/// Reads a kubectl JSON file; every object becomes a snapshot event at `time_ns`.
pub fn read_kubectl_file(path: &Path, time_ns: TimeNs) -> Result<KubectlObjects> {
    let text = std::fs::read_to_string(path).map_err(ReplayError::io(path))?;
    parse_kubectl_json(&text, time_ns).map_err(|reason| ReplayError::KubectlJson { path: path.to_owned(), reason })
}

/// Parses kubectl JSON text: a `List` (or `*List`) of objects, or a single object.
pub fn parse_kubectl_json(text: &str, time_ns: TimeNs) -> std::result::Result<KubectlObjects, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let items: Vec<&Value> = match doc.get("items") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(_) => return Err("`items` is not an array".to_owned()),
        None if doc.get("kind").is_some() => vec![&doc],
        None => return Err("expected a kubectl List (`kind: List` with `items`) or an object with `kind`".to_owned()),
    };
    let list_kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    // `kubectl get pods -o json` gives a List whose items carry no `kind`; the list's
    // own kind (PodList) names them.
    let implied = list_kind.strip_suffix("List").and_then(ObjectKind::parse);
    let mut out = KubectlObjects::default();
    for (index, item) in items.into_iter().enumerate() {
        let kind_name = item.get("kind").and_then(Value::as_str);
        let kind = match kind_name {
            Some(name) => ObjectKind::parse(name),
            None => implied,
        };
        let Some(kind) = kind else {
            if kind_name.is_none() {
                return Err(format!("item {index} has no `kind`"));
            }
            out.skipped += 1;
            continue;
        };
        out.events
            .push(object_event(item, kind, ObjectAction::Snapshot, time_ns).map_err(|e| format!("item {index}: {e}"))?);
    }
    Ok(out)
}

/// Builds an object event from an object's JSON, reading identity from its metadata.
pub fn object_event(
    object: &Value,
    kind: ObjectKind,
    action: ObjectAction,
    time_ns: TimeNs,
) -> std::result::Result<ObjectEvent, String> {
    let metadata = object.get("metadata").ok_or_else(|| format!("{} without metadata", kind.as_str()))?;
    let field = |name: &str| metadata.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
    let name = field("name");
    if name.is_empty() {
        return Err(format!("{} without metadata.name", kind.as_str()));
    }
    let mut object = object.clone();
    // Items of a typed list lack `kind`/`apiVersion`; store the object as the API
    // would return it on its own.
    if let Some(map) = object.as_object_mut() {
        map.entry("kind").or_insert_with(|| Value::String(kind.as_str().to_owned()));
        map.entry("apiVersion").or_insert_with(|| Value::String(api_version(kind).to_owned()));
    }
    Ok(ObjectEvent {
        time_ns,
        kind,
        action,
        uid: field("uid"),
        namespace: field("namespace"),
        name,
        resource_version: field("resourceVersion"),
        object: object.to_string(),
    })
}

/// The apiVersion smap reads each kind at.
pub fn api_version(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::EndpointSlice => "discovery.k8s.io/v1",
        ObjectKind::Ingress | ObjectKind::NetworkPolicy => "networking.k8s.io/v1",
        ObjectKind::Pod | ObjectKind::Service | ObjectKind::Node | ObjectKind::Namespace => "v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_mixed_list_and_skips_unused_kinds() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"ns","uid":"u1","resourceVersion":"7"}},
            {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"ns"}},
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"s","namespace":"ns"}}]}"#;
        let objects = parse_kubectl_json(text, 5).unwrap();
        assert_eq!(objects.skipped, 1);
        let names: Vec<_> = objects.events.iter().map(|e| (e.kind, e.name.as_str(), e.time_ns)).collect();
        assert_eq!(names, vec![(ObjectKind::Pod, "a", 5), (ObjectKind::Service, "s", 5)]);
        assert_eq!(objects.events[0].uid, "u1");
        assert_eq!(objects.events[0].resource_version, "7");
    }

    #[test]
    fn typed_list_items_get_their_kind() {
        let text = r#"{"kind":"PodList","items":[{"metadata":{"name":"a","namespace":"ns"}}]}"#;
        let objects = parse_kubectl_json(text, 0).unwrap();
        assert_eq!(objects.events[0].kind, ObjectKind::Pod);
        assert!(objects.events[0].object.contains(r#""kind":"Pod""#));
    }

    #[test]
    fn rejects_what_is_not_a_list() {
        assert!(parse_kubectl_json("{", 0).unwrap_err().starts_with("not valid JSON"));
        assert!(parse_kubectl_json("[1]", 0).unwrap_err().contains("expected a kubectl List"));
        assert!(parse_kubectl_json(r#"{"kind":"List","items":[{"metadata":{}}]}"#, 0)
            .unwrap_err()
            .contains("no `kind`"));
        assert!(parse_kubectl_json(r#"{"kind":"List","items":[{"kind":"Pod","metadata":{}}]}"#, 0)
            .unwrap_err()
            .contains("without metadata.name"));
    }
}

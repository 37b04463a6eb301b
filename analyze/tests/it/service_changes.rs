//! What the emitter says when a Service itself changes rather than its traffic: health
//! and endpoints from its slices (also a slice deleted by identity alone), a flapping
//! service under the rate limit, and a new version.

use serde_json::json;
use smap_analyze::events::ChangeData;
use smap_replay::{ObjectAction, ObjectKind};

use crate::events::{b, brief, config, pod, settled, slice, MS, S, T0};
use crate::object;

#[test]
fn health_down_and_recovery_are_immediate_and_degraded_waits_for_the_window() {
    let mut run = settled(config());
    let two = |t, a_ready, b_ready| {
        slice("api", &[("10.244.2.20", "api-1", a_ready), ("10.244.2.21", "api-2", b_ready)], t, ObjectAction::Modified)
    };
    let mut out = run.feed([two(T0 + 4 * S, true, false)]); // degraded, endpoints 1/2
    out.extend(run.feed([two(T0 + 10 * S, false, false)])); // down
    out.extend(run.feed([two(T0 + 20 * S, true, true)])); // recovered, endpoints 2/2
    out.extend(run.advance(T0 + 30 * S));
    let health: Vec<_> = brief(&out).into_iter().filter(|e| e.1 != "service_map").collect();
    assert_eq!(
        health,
        vec![
            b(5_000, "health_changed", "shop/api healthy->degraded"),
            b(5_000, "endpoints_changed", "shop/api 1/1->1/2"),
            b(10_000, "health_changed", "shop/api degraded->down"),
            b(11_000, "endpoints_changed", "shop/api 1/2->0/2"),
            b(20_000, "health_changed", "shop/api down->healthy"),
            b(21_000, "endpoints_changed", "shop/api 0/2->2/2"),
        ]
    );
    let critical: Vec<bool> = out
        .iter()
        .filter_map(|e| match &e.data {
            ChangeData::HealthChanged(h) => Some(h.critical),
            _ => None,
        })
        .collect();
    assert_eq!(critical, vec![false, true, true]);
}

#[test]
fn a_slice_deleted_by_identity_alone_still_changes_its_services_endpoints() {
    // A relist after 410 Gone, or an object gone from a kubectl file, records the
    // deletion with the object's identity only: no label says whose slice it was.
    let mut run = settled(config());
    let mut out = run.feed([slice("api", &[("10.244.2.20", "api-1", false)], T0 + 4 * S, ObjectAction::Modified)]);
    let tombstone = object(
        ObjectKind::EndpointSlice,
        ObjectAction::Deleted,
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "api-abc", "namespace": "shop"}}),
        T0 + 10 * S,
    );
    out.extend(run.feed([tombstone]));
    out.extend(run.advance(T0 + 20 * S));
    // Without slices the Service is resolved by its selector, whose pod is ready.
    let changes: Vec<_> = brief(&out).into_iter().filter(|e| e.1 != "service_map").collect();
    assert_eq!(
        changes,
        vec![
            b(4_000, "health_changed", "shop/api healthy->down"),
            b(5_000, "endpoints_changed", "shop/api 1/1->0/1"),
            b(10_000, "health_changed", "shop/api down->healthy"),
            b(11_000, "endpoints_changed", "shop/api 0/1->1/1"),
        ]
    );
}

#[test]
fn a_flapping_service_is_reported_at_the_rate_limit_with_its_latest_state() {
    let mut run = settled(config());
    let api = |t, ready| slice("api", &[("10.244.2.20", "api-1", ready)], t, ObjectAction::Modified);
    let mut out = run.feed([api(T0 + 5 * S, false), api(T0 + 5_500 * MS, true), api(T0 + 6 * S, false)]);
    out.extend(run.feed([api(T0 + 6_500 * MS, true)]));
    out.extend(run.advance(T0 + 20 * S));
    let health: Vec<_> = brief(&out).into_iter().filter(|e| e.1 == "health_changed").collect();
    // Down at once; the flaps within the next 2s collapse into the state at 7s.
    assert_eq!(
        health,
        vec![
            b(5_000, "health_changed", "shop/api healthy->down"),
            b(7_000, "health_changed", "shop/api down->healthy")
        ]
    );
}

#[test]
fn a_new_version_is_reported_at_once() {
    let mut run = settled(config());
    let out = run.feed([
        pod("api-2", "10.244.2.21", "api", "registry.example/api:1.1", T0 + 5 * S, ObjectAction::Added),
        slice(
            "api",
            &[("10.244.2.20", "api-1", true), ("10.244.2.21", "api-2", true)],
            T0 + 5 * S,
            ObjectAction::Modified,
        ),
        pod("api-1", "10.244.2.20", "api", "registry.example/api:1.0", T0 + 8 * S, ObjectAction::Deleted),
        slice("api", &[("10.244.2.21", "api-2", true)], T0 + 8 * S, ObjectAction::Modified),
    ]);
    let mut all = out;
    all.extend(run.advance(T0 + 20 * S));
    let versions: Vec<_> = brief(&all).into_iter().filter(|e| e.1 == "version_changed").collect();
    assert_eq!(
        versions,
        vec![
            b(5_000, "version_changed", r#"shop/api Some("1.0")->Some("1.0,1.1")"#),
            b(8_000, "version_changed", r#"shop/api Some("1.0,1.1")->Some("1.1")"#),
        ]
    );
    let endpoints: Vec<_> = brief(&all).into_iter().filter(|e| e.1 == "endpoints_changed").collect();
    assert_eq!(
        endpoints,
        vec![b(6_000, "endpoints_changed", "shop/api 1/1->2/2"), b(9_000, "endpoints_changed", "shop/api 2/2->1/1")]
    );
}

//! The DaemonSet in deploy/ runs `smap` with flags that exist, and the Kubernetes
//! source flags resolve as docs/deploy.md says.

use serde_json::Value;

use crate::{assert_input_error, repo, smap, stderr};

/// The container args of deploy/daemonset.yaml.
fn daemonset_args() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("deploy/daemonset.yaml")).unwrap();
    let ds: Value = serde_norway::from_str(&text).unwrap();
    let args = &ds["spec"]["template"]["spec"]["containers"][0]["args"];
    args.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_daemonset_args_parse() {
    let mut args = daemonset_args();
    // clap reads left to right: an unknown or malformed flag before --help is an
    // error (exit 2), so a clean --help proves every flag the manifest uses exists.
    args.push("--help".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = smap(&args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

#[test]
fn a_kubectl_file_and_the_api_are_exclusive() {
    let out = smap(&["capture", "--out", "/nonexistent/rec", "--k8s-from", "k8s.json", "--kubeconfig", "kc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("'--k8s-from <FILE>' cannot be used with '--kubeconfig <FILE>'"), "{}", stderr(&out));
}

#[test]
fn a_missing_kubeconfig_is_reported_before_anything_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("rec");
    let out = smap(&["capture", "--out", out_dir.to_str().unwrap(), "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_input_error(&out, "reading kubeconfig /nonexistent/kubeconfig");
    assert!(!out_dir.exists(), "no recording is left behind");
}

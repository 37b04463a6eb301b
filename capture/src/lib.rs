//! smap's live side: the sources, every input that comes from a running system rather
//! than a file, and [`live`], what runs on them.
//!
//! Every live timestamp comes from one [`clock::Clock`].
//! [`kernel`] loads smap's eBPF programs and turns the kernel's connection events into
//! [`smap_replay::ConnEvent`]s; [`kubectl_file`] follows Kubernetes state in a kubectl
//! JSON file and [`k8s_api`] watches the Kubernetes API; [`pod_cgroups`] and
//! [`netns_addr`] tell which pod a cgroup or a network namespace is. [`live`] records
//! them, runs the engine on them for `smap watch` and serves the map.

pub mod clock;
pub mod k8s_api;
pub mod kernel;
pub mod kubectl_file;
pub mod live;
pub mod netns_addr;
mod object_diff;
pub mod pod_cgroups;

//! One module per command; each turns parsed flags into library calls.

pub mod analyze;
pub mod build;
pub mod capture;
pub mod k8s;
pub mod netpol;
pub mod simulate;
pub mod watch;

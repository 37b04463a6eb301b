//! Kubernetes NetworkPolicies against observed traffic: which observed connections a
//! set of policies would deny, and which of their rules nothing used.
//!
//! [`policy`] reads policies strictly, [`selector`] and [`evaluate`] hold the
//! Kubernetes semantics, [`mod@observe`] turns a replay into the flows policies judge,
//! [`mod@check`] is the report and [`mod@generate`] writes policies that allow exactly
//! what was observed.

pub mod check;
pub mod evaluate;
pub mod generate;
pub mod observe;
pub mod policy;
pub mod selector;

pub use check::CheckReport;
pub use generate::{generate, GenerateOptions};
pub use observe::Observed;
pub use policy::{parse_policies, Policy, PolicyError};

use crate::build::BuildInput;

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum NetpolError {
    /// A recording could not be read.
    #[error(transparent)]
    Replay(#[from] smap_replay::ReplayError),
    /// A policy could not be read.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Replays `input` and judges what it observed against `policies`, or against the
/// recordings' own NetworkPolicies as of the end of the window when `None`.
pub fn check(input: BuildInput, policies: Option<Vec<Policy>>) -> Result<CheckReport, NetpolError> {
    let observed = observe(input)?;
    Ok(judge(&observed, policies)?)
}

/// Replays `input` into what NetworkPolicies judge.
pub fn observe(input: BuildInput) -> Result<Observed, smap_replay::ReplayError> {
    let nodes = input.recordings.iter().map(|r| r.meta().node.clone()).collect::<Vec<_>>();
    let mut observer = observe::Observer::new(nodes);
    crate::build::replay_all(input.into_facts()?, &mut |_| {}, |event| observer.apply(event))?;
    Ok(observer.finish())
}

/// Judges what was observed against `policies`, or the recordings' own when `None`.
pub fn judge(observed: &Observed, policies: Option<Vec<Policy>>) -> Result<CheckReport, PolicyError> {
    let policies = match policies {
        Some(policies) => policies,
        None => observed
            .policies
            .values()
            .map(|value| policy::policy_from_value("the recording", value.clone()))
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(CheckReport::judge(&policies, &observed.namespaces, &observed.flows))
}

//! `smap simulate`: a scenario (or a generated cluster) played out as a recording.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use smap_replay::simulate::{simulate, Scenario, SimOptions};

use crate::cli::{SimulateArgs, MAX_SIMULATED_PODS};

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let scenario = match (&args.scenario, args.services) {
        (Some(path), _) => Scenario::from_file(path).context("reading scenario")?,
        (None, Some(n)) => {
            let pods = i64::from(n) * i64::from(args.pods_per_service);
            anyhow::ensure!(
                pods <= MAX_SIMULATED_PODS,
                "--services {n} x --pods-per-service {} is {pods} pods; smap simulate generates at most {MAX_SIMULATED_PODS}",
                args.pods_per_service
            );
            Scenario::generated(n, args.pods_per_service, args.externals)
        }
        (None, None) => anyhow::bail!("give a --scenario FILE or --services N to generate a cluster"),
    };
    let options = SimOptions {
        seed: args.seed,
        connections: args.events.map_or(args.connections, |events| events.div_ceil(4)),
        churn_per_1000: args.churn,
        embed_objects: !args.k8s_out_only,
        ..SimOptions::default()
    };
    let outcome = simulate(&scenario, &options, &args.out)
        .with_context(|| format!("writing simulated recording {}", args.out.display()))?;
    if let Some(path) = &args.kubectl_out {
        let items: Vec<serde_json::Value> = outcome
            .snapshot
            .iter()
            .map(|e| serde_json::from_str(&e.object))
            .collect::<Result<_, _>>()
            .context("re-reading simulated objects")?;
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items});
        let text = serde_json::to_string_pretty(&list).context("serializing kubectl list")?;
        fs_err::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let c = &outcome.meta.counters;
    tracing::info!(
        "{}: {} connection events, {} object events, {} churn steps",
        args.out.display(),
        c.conn_events,
        c.object_events,
        outcome.churn_steps
    );
    Ok(ExitCode::SUCCESS)
}

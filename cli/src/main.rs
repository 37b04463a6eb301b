//! The `smap` binary: parses the command line, runs one command, maps errors to exit codes.

mod cli;
mod cmd;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command, LogFormat};

/// Exit code for usage and input errors (bad files, bad flags, missing privileges).
const EXIT_INPUT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose, cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(error) if output::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) if cli.log_format == LogFormat::Json => {
            // A log shipper reading JSON lines gets the fatal error as one too.
            tracing::error!("{}", causes_once(&error));
            ExitCode::from(EXIT_INPUT_ERROR)
        }
        Err(error) => {
            #[expect(clippy::print_stderr, reason = "the one place the binary reports a fatal error")]
            {
                eprintln!("error: {}", causes_once(&error));
            }
            ExitCode::from(EXIT_INPUT_ERROR)
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the
/// message already holds: library errors often print their source in their own
/// message, and a chain that repeats it reads as several failures.
fn causes_once(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(args) => cmd::build::run(args),
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Netpol { command: cli::NetpolCommand::Check(args) } => cmd::netpol::check(args),
        Command::Netpol { command: cli::NetpolCommand::Generate(args) } => cmd::netpol::generate(args),
        Command::Capture(args) => cmd::capture::run(args),
        Command::Watch(args) => cmd::watch::run(args),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "smap", &mut out);
            output::write_output(None, &String::from_utf8_lossy(&out))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            output::write_output(None, &String::from_utf8_lossy(&out))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logs go to stderr; `-v`/`-vv` raise the level, `RUST_LOG` overrides both. Colour
/// only on a terminal, and not when `NO_COLOR` is set (no-color.org): log files and
/// pipes get plain text. `--log-format json` writes one JSON object per line.
fn init_tracing(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(colour).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

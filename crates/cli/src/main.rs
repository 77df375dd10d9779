//! `jingteng`: the command line of the Jingteng marketing data clean room.
//!
//! Exit codes: 0 success; 1 an error (printed with its causes); 2 bad command-line
//! usage (printed by the argument parser).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod synth;

/// Jingteng: an open, self-hostable marketing data clean room.
///
/// A media platform, a retailer and brands each run a node; the nodes match their users
/// with private set intersection and answer only aggregate questions under privacy
/// rules the engine enforces. See the README and docs/ for the whole picture.
#[derive(Debug, Parser)]
#[command(name = "jingteng", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a synthetic social / retail / brand world with known ground truth.
    ///
    /// Writes every party's tables as CSV and Parquet under DIR (social/, retail/,
    /// brand/), the hidden ground truth under DIR/truth/ and DIR/truth.json. The same
    /// seed and scale give byte-identical files. See docs/synthetic-world.md.
    Synth(SynthArgs),
}

#[derive(Debug, clap::Args)]
struct SynthArgs {
    /// Directory to write the world into (created; must be empty unless --force).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// tiny (5 k people), small (50 k), medium (1 M), large (10 M), or a number of people.
    #[arg(long, default_value = "small")]
    scale: String,
    /// Replace DIR if it exists and is not empty.
    #[arg(long)]
    force: bool,
    /// Print the summary as JSON (the truth included) instead of tables.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(args) => synth::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Peak resident memory of this process, where the platform reports it.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Parses a scale argument with a message that says what is accepted.
pub(crate) fn parse_scale(s: &str) -> anyhow::Result<jingteng_synth::Scale> {
    s.parse().context("--scale")
}

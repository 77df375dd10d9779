//! `jingteng bench lift-coverage` and `jingteng bench attribution`: the measurement
//! benchmarks of issue #6.
//!
//! - `lift-coverage` simulates holdout studies with a known effect, releases each
//!   through an in-memory engine (DP by default) and the real lift code, and reports
//!   how often each 95% interval covers the truth (`jingteng_measure::simulate`).
//! - `attribution` times last-touch attribution through the engine (threshold and DP)
//!   against the same attribution written independently as plain DataFusion SQL over
//!   the same joined Parquet files, after checking both give the same figures. Each
//!   side runs in its own child process (this binary, with the hidden `--side`), so
//!   each side's peak memory (`VmHWM`) is its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use jingteng_engine::ReleaseMode;
use jingteng_engine::datafusion::prelude::SessionContext;
use jingteng_measure::bench::{self, AttributionBench, SideRun, SideSummary};
use jingteng_measure::simulate::{CoverageSettings, coverage_study, summarize};
use jingteng_measure::{AttributionSettings, Sources};

/// How often the lift intervals cover the true effect, over simulated studies.
#[derive(Debug, clap::Args)]
pub(crate) struct LiftCoverageArgs {
    /// Studies to simulate (each a seed and an effect size; effects 0, 5, 10, 20, 40%
    /// in turn).
    #[arg(long, default_value_t = 1_000)]
    studies: u32,
    /// Seed of the simulated data (the DP noise comes from the engine's secure RNG and
    /// is not seeded).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Release mode of the group figures: dp or threshold.
    #[arg(long, default_value = "dp")]
    mode: String,
    /// Fewest linked people in a study (test + control).
    #[arg(long, default_value_t = 20_000)]
    min_people: u64,
    /// Most linked people in a study.
    #[arg(long, default_value_t = 200_000)]
    max_people: u64,
    /// Bootstrap replicates of the value interval.
    #[arg(long, default_value_t = 2_000)]
    draws: u32,
    /// Studies run at once (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print JSON (the summary and every study).
    #[arg(long)]
    json: bool,
}

fn mode(s: &str) -> anyhow::Result<ReleaseMode> {
    match s {
        "dp" => Ok(ReleaseMode::Dp),
        "threshold" => Ok(ReleaseMode::Threshold),
        other => bail!("--mode {other:?}: dp or threshold"),
    }
}

fn debug_note(json: bool) {
    if cfg!(debug_assertions) && !json {
        eprintln!("note: this is a debug build; build with --release for meaningful figures");
    }
}

pub(crate) fn lift_coverage(args: LiftCoverageArgs) -> anyhow::Result<()> {
    debug_note(args.json);
    if args.studies == 0 || args.min_people < 1_000 || args.max_people < args.min_people {
        bail!("give at least one study and 1,000 ≤ --min-people ≤ --max-people");
    }
    let settings = CoverageSettings {
        studies: args.studies,
        seed: args.seed,
        mode: mode(&args.mode)?,
        people: (args.min_people, args.max_people),
        bootstrap_draws: args.draws,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let bar = crate::progress_bar(u64::from(args.studies), "studies");
    let studies = runtime.block_on(async {
        let next = Arc::new(AtomicU32::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..threads {
            let (next, bar) = (next.clone(), bar.clone());
            workers.spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= settings.studies {
                        break;
                    }
                    done.push(coverage_study(&settings, i).await?);
                    bar.inc(1);
                }
                anyhow::Ok(done)
            });
        }
        let mut all = Vec::new();
        while let Some(r) = workers.join_next().await {
            all.extend(r??);
        }
        all.sort_by_key(|s| s.index);
        anyhow::Ok(all)
    })?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let report = summarize(&settings, &studies);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "report": report, "seconds": seconds, "threads": threads, "studies": studies,
            }))?
        );
        return Ok(());
    }
    println!(
        "{} simulated studies in {:.1} s ({} threads), {} mode, {:.0}% intervals",
        studies.len(),
        seconds,
        threads,
        args.mode,
        100.0 * report.confidence
    );
    println!("  {}", report.model);
    for i in &report.intervals {
        println!(
            "  {:<28} {:<28} covered {:>5}/{:<5} = {:5.1}%  (95% CI {:.1}–{:.1}%){}",
            i.interval,
            i.method,
            i.covered,
            i.studies,
            100.0 * i.coverage,
            100.0 * i.coverage_low,
            100.0 * i.coverage_high,
            if i.missing > 0 {
                format!("; {} studies without an interval", i.missing)
            } else {
                String::new()
            }
        );
    }
    println!("  by true relative effect (difference / relative lift / incremental GMV):");
    for e in &report.by_effect {
        println!(
            "    {:+4.0}%: {:>4} studies  {:5.1}% / {:5.1}% / {:5.1}%",
            100.0 * e.relative_effect,
            e.studies,
            100.0 * e.coverage[0],
            100.0 * e.coverage[1],
            100.0 * e.coverage[2]
        );
    }
    Ok(())
}

/// Last-touch attribution through the engine against plain DataFusion SQL.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("world").required(true).args(["spec", "scale"])))]
pub(crate) struct AttributionBenchArgs {
    /// An existing world's collaboration spec.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Generate a world of this scale (tiny, small, medium, large or a number of people).
    #[arg(long, value_parser = crate::parse_scale)]
    scale: Option<jingteng_synth::Scale>,
    /// Where to generate the world (with --scale).
    #[arg(long, default_value = "bench-world", value_name = "DIR")]
    out: PathBuf,
    /// Timed runs of each side (each in a fresh process), medians reported.
    #[arg(long, default_value_t = 1)]
    reps: usize,
    /// Memory the engine's queries may use, in MiB (plain DataFusion has no limit).
    #[arg(long, default_value_t = 4096, value_name = "MIB")]
    memory_mb: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Internal: run one side in this process and print its result as JSON.
    #[arg(long, hide = true)]
    side: Option<String>,
}

fn status_kib(field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("{field} in /proc/self/status"))
}

async fn plain_side(state: &Path, info: &jingteng_engine::ViewInfo) -> anyhow::Result<SideRun> {
    let ctx = SessionContext::new();
    jingteng_engine::register_view(&ctx, state, info).await?;
    let start_rss_bytes = status_kib("VmRSS:")? * 1024;
    let started = Instant::now();
    let campaigns = bench::plain_attribution(&ctx, &AttributionSettings::default()).await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(SideRun {
        side: "plain".into(),
        seconds,
        start_rss_bytes,
        peak_rss_bytes: status_kib("VmHWM:")? * 1024,
        campaigns,
        suppressed: 0,
    })
}

async fn engine_side(
    spec: &Path,
    state: &Path,
    info: &jingteng_engine::ViewInfo,
    mode: ReleaseMode,
    memory_mb: usize,
) -> anyhow::Result<SideRun> {
    let text =
        std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    let collab = bench::collab_in_mode(&text, mode)?;
    let limits = jingteng_engine::Limits {
        memory_bytes: memory_mb << 20,
        timeout: std::time::Duration::from_secs(3_600),
    };
    let mut engine = jingteng_engine::Engine::open(
        &collab,
        state,
        info,
        jingteng_catalog::Catalog::in_memory()?,
        limits,
    )
    .await?;
    let start_rss_bytes = status_kib("VmRSS:")? * 1024;
    let started = Instant::now();
    let report = jingteng_measure::attribute(
        &mut engine,
        info,
        &AttributionSettings::default(),
        &Sources::default(),
        None,
        &[],
        "bench",
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let campaigns = bench::released_figures(&report);
    Ok(SideRun {
        side: match mode {
            ReleaseMode::Dp => "engine-dp".into(),
            ReleaseMode::Threshold => "engine-threshold".into(),
        },
        seconds,
        start_rss_bytes,
        peak_rss_bytes: status_kib("VmHWM:")? * 1024,
        suppressed: report.campaigns.len() - campaigns.len(),
        campaigns,
    })
}

fn state_of(spec: &Path) -> PathBuf {
    spec.parent()
        .unwrap_or(Path::new("."))
        .join(".jingteng-bench")
}

/// Runs one side in a child process (this binary) and reads its result.
fn child(spec: &Path, side: &str, memory_mb: usize) -> anyhow::Result<SideRun> {
    // /proc/self/exe runs this very program even if its file was replaced meanwhile
    // (a rebuild); elsewhere, the path it was started from.
    let exe = if Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().context("finding this program")?
    };
    let out = std::process::Command::new(exe)
        .args(["bench", "attribution", "--spec"])
        .arg(spec)
        .args(["--side", side, "--memory-mb", &memory_mb.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running the {side} side"))?;
    if !out.status.success() {
        bail!("the {side} side failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("reading the {side} side's result"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn attribution(args: AttributionBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(side) = &args.side {
        let spec = args.spec.as_ref().context("--side needs --spec")?;
        let state = state_of(spec);
        let info = jingteng_engine::view::load(&state)?;
        let run = runtime.block_on(async {
            match side.as_str() {
                "plain" => plain_side(&state, &info).await,
                "engine-threshold" => {
                    engine_side(spec, &state, &info, ReleaseMode::Threshold, args.memory_mb).await
                }
                "engine-dp" => {
                    engine_side(spec, &state, &info, ReleaseMode::Dp, args.memory_mb).await
                }
                other => bail!("--side {other:?}"),
            }
        })?;
        println!("{}", serde_json::to_string(&run)?);
        return Ok(());
    }
    debug_note(args.json);
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let spec = crate::bench::world_spec(args.spec.as_ref(), args.scale, &args.out)?;
    let state = state_of(&spec);
    eprintln!("building the joined view (match and join)…");
    let started = Instant::now();
    let info = runtime.block_on(jingteng_engine::view::build_local(
        &spec,
        &state,
        Arc::new(|_: &str, _: u64| {}),
    ))?;
    eprintln!("  {:.1} s", started.elapsed().as_secs_f64());
    drop(runtime);

    let sides = ["plain", "engine-threshold", "engine-dp"];
    let mut runs: Vec<Vec<SideRun>> = vec![Vec::new(); sides.len()];
    for rep in 0..args.reps {
        for (i, side) in sides.iter().enumerate() {
            eprintln!("run {} of {}: {side}…", rep + 1, args.reps);
            let r = child(&spec, side, args.memory_mb)?;
            eprintln!("  {:.2} s, peak {} MiB", r.seconds, r.peak_rss_bytes >> 20);
            runs[i].push(r);
        }
        bench::check_equal(&runs[0][rep].campaigns, &runs[1][rep].campaigns)
            .context("threshold mode: engine and plain DataFusion disagree")?;
    }
    let summaries: Vec<SideSummary> = runs
        .iter()
        .map(|rs| {
            let last = &rs[rs.len() - 1];
            SideSummary {
                side: last.side.clone(),
                median_seconds: median(rs.iter().map(|r| r.seconds).collect()),
                seconds: rs.iter().map(|r| r.seconds).collect(),
                peak_rss_bytes: rs.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0),
                start_rss_bytes: last.start_rss_bytes,
                released_campaigns: last.campaigns.len(),
                suppressed: last.suppressed,
            }
        })
        .collect();
    let rows = |name: &str| {
        info.tables
            .iter()
            .find(|t| t.name == name)
            .map_or(0, |t| t.rows)
    };
    let plain = &runs[0][0];
    let bench = AttributionBench {
        exposure_rows: rows("social.exposures"),
        order_rows: rows("retail.orders"),
        attributed_orders: plain.campaigns.iter().map(|c| c.conversions).sum(),
        attributed_gmv_fen: plain.campaigns.iter().map(|c| c.gmv_fen).sum(),
        ratio_threshold: summaries[1].median_seconds / summaries[0].median_seconds,
        ratio_dp: summaries[2].median_seconds / summaries[0].median_seconds,
        rep_ratios: (0..args.reps)
            .map(|r| {
                let p = runs[0][r].seconds;
                [runs[1][r].seconds / p, runs[2][r].seconds / p]
            })
            .collect(),
        sides: summaries,
        threshold_figures_equal: true,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&bench)?);
        return Ok(());
    }
    println!(
        "last-touch attribution over {} exposure rows and {} orders: {} attributed orders, GMV ¥{:.2}",
        bench.exposure_rows,
        bench.order_rows,
        bench.attributed_orders,
        bench.attributed_gmv_fen as f64 / 100.0
    );
    println!(
        "threshold mode: the engine's figures equal plain DataFusion's for every released campaign"
    );
    for s in &bench.sides {
        println!(
            "  {:<17} {:>8.2} s (median of {})  peak memory {:>6} MiB (at start {} MiB)  {} campaigns released, {} left out",
            s.side,
            s.median_seconds,
            s.seconds.len(),
            s.peak_rss_bytes >> 20,
            s.start_rss_bytes >> 20,
            s.released_campaigns,
            s.suppressed
        );
    }
    println!(
        "  ratio engine / plain (medians): threshold {:.2}, DP {:.2}; per run: {}",
        bench.ratio_threshold,
        bench.ratio_dp,
        bench
            .rep_ratios
            .iter()
            .map(|[t, d]| format!("{t:.2} / {d:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

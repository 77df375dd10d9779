//! `jingteng bench psi`: the matching pipeline measured against the bare curve work,
//! in one run, so the ratio holds on a shared, noisy machine.

use std::hint::black_box;
use std::time::Instant;

use arrow::array::StringArray;
use cpu_time::ProcessTime;
use jingteng_psi::{Channel, Collaboration, DigestKind, SecretKey};
use rayon::prelude::*;
use serde::Serialize;

use crate::pipeline::{Source, match_sources, secure_rng};
use crate::read::BATCH_ROWS;
use crate::{Error, Result};

/// What `jingteng bench psi` measures.
#[derive(Debug, Clone, Serialize)]
pub struct PsiBench {
    /// Records per party.
    pub records: u64,
    /// Identifier types per record.
    pub keys: u32,
    /// Records/s/core of the bare curve work: one hash-to-group and one variable-base
    /// scalar multiplication per record, a plain loop on every worker thread (timed
    /// before and after the match, averaged).
    pub ceiling_per_core: f64,
    /// Records of both parties together per CPU second of the full two-party match
    /// (normalisation, hashing, blinding, encoding, shuffling, linking, report).
    pub psi_per_core: f64,
    /// `psi_per_core × keys / ceiling_per_core`. Each record-key needs one hash and two
    /// multiplications, so about 0.6 is ideal.
    pub ratio: f64,
    /// What `ratio` would be if the match did nothing but its curve work (one hash and
    /// two multiplications per record), from the separately timed hash and
    /// multiplication rates of this run.
    pub ideal_ratio: f64,
    /// `ratio / ideal_ratio`: the share of the match's CPU time spent on the curve work
    /// the protocol cannot avoid.
    pub efficiency: f64,
    /// Peak resident memory of the match above what the process held before it,
    /// per record of both parties.
    pub peak_bytes_per_record: Option<f64>,
    /// People matched (the two parties overlap by half).
    pub matched: u64,
    /// Wall time of the match.
    pub wall_seconds: f64,
    /// CPU time of the match (all threads).
    pub cpu_seconds: f64,
    /// Worker threads.
    pub threads: usize,
}

fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident memory of this process in bytes, where the platform reports it
/// (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Identifier columns of a record of person `i`, for `keys` types.
fn values(i: u64, keys: u32) -> Vec<String> {
    let mut v = vec![format!(
        "+86 138-{:04}-{:04}",
        i / 10_000 % 10_000,
        i % 10_000
    )];
    if keys >= 2 {
        v.push(format!("Person.{i}@Example.com"));
    }
    if keys >= 3 {
        v.push(format!(
            "{i:08x}-0000-4000-8000-{:012x}",
            i.wrapping_mul(7919)
        ));
    }
    v
}

/// Writes the benchmark's two parties as CSV files (`a.csv`, `b.csv`: `records` each,
/// `keys` identifier types, overlapping by half) and their spec (`spec.toml`, hosted by
/// `a`) into `dir`, for benchmarks that run the match between nodes; returns the spec's
/// path.
pub fn write_parties(dir: &std::path::Path, records: u64, keys: u32) -> Result<std::path::PathBuf> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::Internal(format!("writing the benchmark's files: {e}"));
    std::fs::create_dir_all(dir).map_err(io)?;
    let half = records / 2;
    for (name, range) in [("a", 0..records), ("b", half..half + records)] {
        let file = std::fs::File::create(dir.join(format!("{name}.csv"))).map_err(io)?;
        let mut w = std::io::BufWriter::new(file);
        let header = ["id", "phone", "email", "oaid"][..=keys as usize].join(",");
        writeln!(w, "{header}").map_err(io)?;
        for i in range {
            writeln!(w, "r{i},{}", values(i, keys).join(",")).map_err(io)?;
        }
        w.flush().map_err(io)?;
    }
    let text = spec(keys).replace("id = \"bench\"\n", "id = \"bench\"\nhost = \"a\"\n");
    let path = dir.join("spec.toml");
    std::fs::write(&path, text).map_err(io)?;
    Ok(path)
}

fn spec(keys: u32) -> String {
    let mut ids = String::new();
    for (col, ty) in [
        ("phone", "phone"),
        ("email", "email"),
        ("oaid", "device:oaid"),
    ]
    .iter()
    .take(keys as usize)
    {
        ids.push_str(&format!(
            "[[party.table.identifier]]\ncolumn = \"{col}\"\ntype = \"{ty}\"\n"
        ));
    }
    let party = |name: &str| {
        format!(
            "[[party]]\nname = \"{name}\"\n[[party.table]]\nname = \"users\"\npath = \"{name}.csv\"\nrecord_id = \"id\"\n{ids}\n"
        )
    };
    format!(
        "[collaboration]\nid = \"bench\"\n\n{}{}",
        party("a"),
        party("b")
    )
}

fn batches(range: std::ops::Range<u64>, keys: u32) -> Source {
    let starts: Vec<u64> = range.clone().step_by(BATCH_ROWS).collect();
    Source::Batches(Box::new(starts.into_iter().map(move |s| {
        let end = (s + BATCH_ROWS as u64).min(range.end);
        let rows: Vec<Vec<String>> = (s..end).map(|i| values(i, keys)).collect();
        (0..keys as usize)
            .map(|k| StringArray::from_iter_values(rows.iter().map(|r| r[k].as_str())))
            .collect()
    })))
}

/// Which bare curve work to time.
#[derive(Clone, Copy)]
enum Work {
    /// Hash-to-group only.
    Hash,
    /// Variable-base multiplication only.
    Mul,
    /// Both: the ceiling.
    Both,
}

/// A plain loop of curve work per record, on every worker thread at once (so it runs
/// under the same load as the match), as records per CPU second.
fn curve_rate(samples: u64, work: Work) -> Result<f64> {
    let mut rng = secure_rng()?;
    let key = SecretKey::random(&mut rng);
    let channel = Channel::new("bench", "phone/sha256");
    let threads = rayon::current_num_threads().max(1) as u64;
    let per_thread = samples.div_ceil(threads);
    let digests: Vec<Vec<_>> = (0..threads)
        .map(|t| {
            (t * per_thread..(t + 1) * per_thread)
                .map(|i| DigestKind::Sha256.hash(format!("138{i:08}").as_bytes()))
                .collect()
        })
        .collect();
    let point = channel.hash_to_group(b"a point to multiply");
    let start = ProcessTime::now();
    digests.par_iter().for_each(|ds| {
        for d in ds {
            match work {
                Work::Hash => {
                    black_box(channel.hash_to_group(black_box(d.as_bytes())));
                }
                Work::Mul => {
                    black_box(key.blind(black_box(&point)));
                }
                Work::Both => {
                    black_box(key.blind(&channel.hash_to_group(black_box(d.as_bytes()))));
                }
            }
        }
    });
    let secs = start.elapsed().as_secs_f64();
    Ok((per_thread * threads) as f64 / secs.max(1e-9))
}

/// Runs the benchmark: `records` per party, `keys` identifier types per record, the
/// parties overlapping by half.
pub fn psi(records: u64, keys: u32) -> Result<PsiBench> {
    if !(1..=3).contains(&keys) {
        return Err(Error::Internal(format!(
            "keys must be 1, 2 or 3, not {keys}"
        )));
    }
    let collab = Collaboration::parse(&spec(keys))?;
    let samples = records.clamp(1_000, 200_000);
    // The ceiling is timed before and after the match and averaged, so a change in the
    // machine's speed during the run affects both sides of the ratio alike.
    let ceiling_before = curve_rate(samples / 2, Work::Both)?;
    let (t_hash, t_mul) = (
        1.0 / curve_rate(samples / 2, Work::Hash)?,
        1.0 / curve_rate(samples / 2, Work::Mul)?,
    );
    let ideal_ratio = (t_hash + t_mul) / (t_hash + 2.0 * t_mul);

    let rss_before = proc_status_kb("VmRSS:");
    let cpu = ProcessTime::now();
    let wall = Instant::now();
    let half = records / 2;
    let sources = vec![
        batches(0..records, keys),
        batches(half..half + records, keys),
    ];
    let report = match_sources(&collab, sources, &|_: &str, _: u64| {})?;
    let cpu_seconds = cpu.elapsed().as_secs_f64();
    let wall_seconds = wall.elapsed().as_secs_f64();
    let peak = proc_status_kb("VmHWM:");
    let matched = report.overlap.get("a+b").map_or(0, |o| o.matched);
    let expected = records - half;
    if matched != expected {
        return Err(Error::Internal(format!(
            "benchmark matched {matched} people, expected {expected}"
        )));
    }
    let psi_per_core = 2.0 * records as f64 / cpu_seconds.max(1e-9);
    let ceiling_per_core = (ceiling_before + curve_rate(samples / 2, Work::Both)?) / 2.0;
    Ok(PsiBench {
        records,
        keys,
        ceiling_per_core,
        psi_per_core,
        ratio: psi_per_core * f64::from(keys) / ceiling_per_core,
        ideal_ratio,
        efficiency: psi_per_core * f64::from(keys) / ceiling_per_core / ideal_ratio,
        peak_bytes_per_record: match (peak, rss_before) {
            (Some(p), Some(b)) => {
                Some(p.saturating_sub(b) as f64 * 1024.0 / (2.0 * records as f64))
            }
            _ => None,
        },
        matched,
        wall_seconds,
        cpu_seconds,
        threads: rayon::current_num_threads(),
    })
}

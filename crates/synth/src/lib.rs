//! A synthetic three-party world with known ground truth.
//!
//! People exist once, with a latent profile (age, region, interests, category
//! propensities); the social platform, the retailer and the brand each see a subset of
//! them, with identifiers in the forms real files hold. Campaigns on social raise the
//! probability that exposed test-group people buy the advertised brand at the retailer
//! by a known amount; the control group is eligible but never exposed. Every table is
//! written as CSV and Parquet, with `truth.json` stating what a perfect clean room
//! would find. See `docs/synthetic-world.md` for the tables and the truth's definitions.
//!
//! Generation streams fixed-size chunks of people through all cores; memory does not
//! grow with the number of people, and the same seed gives byte-identical files.

mod collab;
mod ids;
mod person;
mod tables;
mod truth;
mod world;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::person::{CHUNK, World};
use crate::tables::{Table, TableWriter};
use crate::truth::{Truth, TruthAcc, WorldInfo};

/// Errors from generating a world.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The output directory cannot be used.
    #[error("output directory {path}: {reason}")]
    Output {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file could not be created or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing a table failed.
    #[error("writing a table: {0}")]
    Write(String),
    /// A scale that is not a known name or a number of people.
    #[error(
        "unknown scale {0:?}: use tiny, small, medium, large or a number of people (1,000 to 100,000,000)"
    )]
    Scale(String),
    /// A number of media parties this generator cannot make.
    #[error("--media {0}: 1 (social) or 2 (social and news)")]
    Media(u8),
    /// A bug.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How many people the world has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    name: &'static str,
    people: u64,
}

impl Scale {
    /// 5,000 people: unit and end-to-end tests.
    pub const TINY: Scale = Scale {
        name: "tiny",
        people: 5_000,
    };
    /// 50,000 people: the demo.
    pub const SMALL: Scale = Scale {
        name: "small",
        people: 50_000,
    };
    /// 1,000,000 people (about 20 M exposure rows): benchmarks.
    pub const MEDIUM: Scale = Scale {
        name: "medium",
        people: 1_000_000,
    };
    /// 10,000,000 people (about 200 M exposure rows): scale benchmarks.
    pub const LARGE: Scale = Scale {
        name: "large",
        people: 10_000_000,
    };
    /// The fewest and most people a world can have (phone numbers are unique up to 10^8).
    pub const LIMITS: (u64, u64) = (1_000, 100_000_000);

    /// Number of people in the world.
    pub fn people(&self) -> u64 {
        self.people
    }

    /// The scale's name (`tiny`, …, or `custom`).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl FromStr for Scale {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let named = [Scale::TINY, Scale::SMALL, Scale::MEDIUM, Scale::LARGE];
        if let Some(scale) = named.iter().find(|n| n.name.eq_ignore_ascii_case(s.trim())) {
            return Ok(*scale);
        }
        let digits: String = s.chars().filter(|c| *c != '_' && *c != ',').collect();
        match digits.trim().parse::<u64>() {
            Ok(people) if (Self::LIMITS.0..=Self::LIMITS.1).contains(&people) => Ok(Scale {
                name: "custom",
                people,
            }),
            _ => Err(Error::Scale(s.to_string())),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Config {
    /// The seed: the same seed and scale give byte-identical files.
    pub seed: u64,
    /// How many people.
    pub scale: Scale,
    /// Replace an existing, non-empty output directory.
    pub force: bool,
    /// Media parties: 1 (`social`, the world as it always was) or 2 (adds `news`).
    /// The social, retail and brand files are the same either way.
    pub media: u8,
}

/// Progress reports, sent as chunks of people are written.
pub trait Progress: Sync {
    /// `done` of `total` people are written.
    fn people_done(&self, done: u64, total: u64);
}

impl<F: Fn(u64, u64) + Sync> Progress for F {
    fn people_done(&self, done: u64, total: u64) {
        self(done, total)
    }
}

/// What a generation run made.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Summary {
    /// Where the world is.
    pub dir: PathBuf,
    /// Rows per table, as (`party/table`, rows), in a fixed order.
    pub tables: Vec<(&'static str, u64)>,
    /// People per party (`world`, `social`, `retail`, `brand`).
    pub people: Vec<(&'static str, u64)>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The written truth, as JSON.
    pub truth: serde_json::Value,
}

/// Generates a world into `out`. The world appears at `out` only once it is complete:
/// it is written into a sibling temporary directory and renamed into place.
pub fn generate(config: &Config, out: &Path, progress: &dyn Progress) -> Result<Summary> {
    let started = Instant::now();
    if !(1..=2).contains(&config.media) {
        return Err(Error::Media(config.media));
    }
    let staging = prepare_output(out, config.force)?;
    let result = write_world(config, &staging, progress);
    let truth = match result {
        Ok(truth) => truth,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let (tables, truth_value) = truth;
    publish(&staging, out)?;
    let people = ["world", "social", "retail", "brand", "news"]
        .iter()
        .take(if config.media >= 2 { 5 } else { 4 })
        .map(|k| (*k, truth_value["people"][k].as_u64().unwrap_or(0)))
        .collect();
    Ok(Summary {
        dir: out.to_path_buf(),
        tables,
        people,
        elapsed: started.elapsed(),
        truth: truth_value,
    })
}

type Written = (Vec<(&'static str, u64)>, serde_json::Value);

fn write_world(config: &Config, dir: &Path, progress: &dyn Progress) -> Result<Written> {
    let people = config.scale.people;
    let world = World::new(config.seed, people, config.media);
    let tables = Table::for_media(config.media);
    // One writer per table, in `Table` order, so `writers[table as usize]`.
    let mut writers: Vec<TableWriter> = tables
        .iter()
        .map(|&t| TableWriter::create(dir, t))
        .collect::<Result<_>>()?;
    writers[Table::SocialCampaigns as usize].write(&tables::Encoded::new(
        tables::campaigns_batch(&world.campaigns)?,
    )?)?;

    let chunks: Vec<(u64, std::ops::Range<u64>)> = (0..people.div_ceil(CHUNK))
        .map(|i| (i, i * CHUNK..((i + 1) * CHUNK).min(people)))
        .collect();
    // Chunks are generated in parallel, a window at a time, and written in order by
    // this thread while the next window is generated (a rendezvous channel): memory holds
    // at most two windows.
    let window = rayon::current_num_threads().max(1) * 2;
    let mut acc = TruthAcc::new(world.campaigns.len());
    let (tx, rx) = sync_channel::<Result<Vec<_>>>(0);
    let mut done = 0u64;
    std::thread::scope(|scope| -> Result<()> {
        let world = &world;
        let chunks = &chunks;
        scope.spawn(move || {
            for batch in chunks.chunks(window) {
                let generated: Result<Vec<_>> = batch
                    .par_iter()
                    .map(|(i, range)| person::generate_chunk(world, *i, range.clone()))
                    .collect();
                let failed = generated.is_err();
                if tx.send(generated).is_err() || failed {
                    return;
                }
            }
        });
        for generated in rx {
            for (tables, chunk_acc) in generated? {
                for (table, batch) in tables {
                    writers[table as usize].write(&batch)?;
                }
                acc.merge(&chunk_acc);
                done = acc.people;
                progress.people_done(done, people);
            }
        }
        Ok(())
    })?;
    if done != people {
        return Err(Error::Internal(format!(
            "generated {done} of {people} people"
        )));
    }
    let mut rows = Vec::new();
    for (table, writer) in tables.iter().zip(writers) {
        rows.push((table.name(), writer.close()?));
    }
    let info = WorldInfo {
        generator: format!("jingteng-synth {}", env!("CARGO_PKG_VERSION")),
        seed: config.seed,
        scale: if config.scale.name == "custom" {
            people.to_string()
        } else {
            config.scale.name.to_string()
        },
        period_start: "2026-01-01",
        period_end: "2026-06-30",
        time_zone: tables::TZ,
        focal_brand: world::BRANDS[world::FOCAL_BRAND].0,
        caused_orders: acc.caused_orders,
    };
    let truth = Truth::build(info, &acc, &world.campaigns, &world.news, config.media);
    let value = serde_json::to_value(&truth).map_err(|e| Error::Internal(e.to_string()))?;
    let path = dir.join("truth.json");
    let text = serde_json::to_string_pretty(&value).map_err(|e| Error::Internal(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))?;
    let path = dir.join("collab.toml");
    std::fs::write(&path, collab::spec(config.seed, people, config.media))
        .map_err(|e| Error::io(&path, e))?;
    Ok((rows, value))
}

/// Checks `out` and creates the staging directory next to it.
fn prepare_output(out: &Path, force: bool) -> Result<PathBuf> {
    if out.exists() {
        if !out.is_dir() {
            return Err(Error::Output {
                path: out.to_path_buf(),
                reason: "exists and is not a directory".into(),
            });
        }
        let non_empty = std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some();
        if non_empty && !force {
            return Err(Error::Output {
                path: out.to_path_buf(),
                reason: "exists and is not empty (use --force to replace it)".into(),
            });
        }
    }
    let staging = sibling(out, "partial")?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    Ok(staging)
}

/// `<parent>/.<name>.<tag>`: a hidden sibling of `out`, on the same file system.
fn sibling(out: &Path, tag: &str) -> Result<PathBuf> {
    let name = out.file_name().ok_or_else(|| Error::Output {
        path: out.to_path_buf(),
        reason: "has no directory name".into(),
    })?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(".{}.{tag}", name.to_string_lossy())))
}

/// Moves the finished world into place, replacing what was there.
fn publish(staging: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        let old = sibling(out, "old")?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
        std::fs::rename(staging, out).map_err(|e| Error::io(out, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        std::fs::rename(staging, out).map_err(|e| Error::io(out, e))?;
    }
    Ok(())
}

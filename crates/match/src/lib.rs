//! Private identity matching over the parties' tables, in one process ("local mode"):
//! every party's PSI state machine runs with its own fresh key over its own files, and
//! only blinded points pass between them, exactly as they will between nodes.
//!
//! [`run`] reads a collaboration spec, streams each party's identity table in Arrow
//! batches through normalisation and the PSI exchange on all cores, links the join keys
//! across parties by priority, and returns a [`MatchReport`]. [`bench::psi`] measures
//! the same pipeline against the bare curve operations.

pub mod bench;
mod pipeline;
pub mod read;
mod report;

use std::path::{Path, PathBuf};

pub use pipeline::{
    Keyed, PartyContribution, Peers, Progress, Source, channels, contribute, link_and_report,
    link_parts, match_sources, match_sources_linked, secure_rng,
};
pub use report::{ColumnReport, ColumnTally, MatchReport, OverlapReport};

/// Errors of a matching run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An input file's content is not usable (a missing column, a malformed row).
    #[error("{path}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// The spec or the protocol refused something.
    #[error(transparent)]
    Psi(#[from] jingteng_psi::Error),
    /// A bug.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the match a spec file describes; table paths are relative to the spec's folder.
pub fn run(spec_path: &Path, progress: &dyn Progress) -> Result<MatchReport> {
    let collab = read_spec(spec_path)?;
    let base = spec_path.parent().unwrap_or(Path::new("."));
    let sources = collab
        .parties()
        .iter()
        .map(|p| pipeline::Source::File(base.join(&p.identity.path)))
        .collect();
    match_sources(&collab, sources, progress)
}

/// Reads and checks a spec file; mistakes name the file.
pub fn read_spec(spec_path: &Path) -> Result<jingteng_psi::Collaboration> {
    let text = std::fs::read_to_string(spec_path).map_err(|e| Error::Io {
        path: spec_path.to_path_buf(),
        source: e,
    })?;
    let collab = jingteng_psi::Collaboration::parse(&text).map_err(|e| match e {
        jingteng_psi::Error::Spec(m) => Error::Input {
            path: spec_path.to_path_buf(),
            message: m,
        },
        other => Error::Psi(other),
    })?;
    Ok(collab)
}

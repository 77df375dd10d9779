//! Audiences for Jingteng: what the brand and the retailer hand to the media platform
//! so that it can act on the joined view without receiving anyone else's data.
//!
//! - [`Definition`]: include/exclude [`Rule`]s over allowed columns of any party's
//!   tables, checked by the engine's policy, a minimum size and an optional look-alike
//!   expansion; written as TOML or built from flags.
//! - [`evaluate`]: trusted code at the host turns a definition into a set of people of
//!   the joined view (never shown to an analyst); [`release_size`] releases its size
//!   through the engine under the collaboration's privacy rules (DP by default), and an
//!   audience under its minimum is refused with a size class, never its exact size.
//! - [`lookalike`]: a logistic regression (linfa) on the media party's allowed
//!   features, the seed audience as positives, held-out precision reported.
//! - [`Store`] and [`deliver`]: versions materialised at the activation party as its
//!   own user ids, after the consent scope of every dataset used is checked;
//!   [`rta_index`] builds an RTA index from what was delivered, with opted-out and
//!   deleted users suppressed.
//! - [`forget`]: per-user opt-out and deletion, propagated to the view, audiences,
//!   deliveries, RTA and the answer cache.
//! - [`rta`]: real-time bidding decisions. The media platform asks "bid for this user,
//!   for campaign X?" with the user's hashed device id; an in-memory index of active
//!   audiences answers yes or no and a bid multiplier, over HTTP/1.1 keep-alive.
//!   Opted-out and deleted users always get no.

mod definition;
mod delivery;
mod evaluate;
pub mod lookalike;
mod rights;
pub mod rta;
mod rule;

use std::path::PathBuf;

// The public surface: definitions and rules; evaluation and release; delivery and RTA;
// data rights.
pub use definition::{
    DEFAULT_MIN_SIZE, Definition, DefinitionFile, LookalikeSection, Refresh, size_class,
};
pub use delivery::{
    DeliveredVersion, Delivery, RtaBuild, Store, VersionRecord, check_consent, deliver,
    device_md5s, rta_index,
};
pub use evaluate::{Evaluation, SEED_BOUNDS, SizeRelease, evaluate, release_size};
pub use lookalike::{LookalikeReport, LookalikeSettings};
pub use rights::{ForgetKind, ForgetReport, forget, purge_delivered};
pub use rule::Rule;

/// Errors of audiences.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rule that cannot be parsed or names something that does not exist.
    #[error("rule {rule:?}: {message}")]
    Rule {
        /// The rule as written.
        rule: String,
        /// What is wrong.
        message: String,
    },
    /// A rule that breaks an owner's rule (an identifier, the person id, a table not
    /// about people).
    #[error("refused [{policy_rule}]: rule {rule_text:?}: {message}")]
    RuleRefused {
        /// The rule as written.
        rule_text: String,
        /// The policy rule broken (as in docs/privacy.md).
        policy_rule: &'static str,
        /// Why.
        message: String,
    },
    /// A definition that is not valid.
    #[error("audience definition: {0}")]
    Definition(String),
    /// Fewer people than the minimum: only the size class is said.
    #[error(
        "refused [audience-too-small]: audience {name:?} has {class} people; the minimum is {}. Widen the rules (fewer or looser include rules, fewer exclude rules)",
        definition::thousands(*.min)
    )]
    TooSmall {
        /// The audience.
        name: String,
        /// Its size class, e.g. "fewer than 1,000".
        class: String,
        /// The minimum that applies.
        min: u64,
    },
    /// A look-alike that cannot be built (seed out of bounds, too few media users).
    #[error("look-alike: {0}")]
    Lookalike(String),
    /// A dataset used by the audience does not allow activation.
    #[error(
        "refused [consent]: {table} is used by audience {audience:?} but its consent scope is [{scopes}], without \"activation\"; its people may not be delivered to a media party"
    )]
    Consent {
        /// The audience.
        audience: String,
        /// `party.table`.
        table: String,
        /// The scopes it allows.
        scopes: String,
    },
    /// No such audience in the store.
    #[error("no audience {0:?} (jingteng audience list shows them)")]
    Unknown(String),
    /// The engine failed or refused.
    #[error(transparent)]
    Engine(#[from] jingteng_engine::Error),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] jingteng_catalog::Error),
    /// Building an RTA index failed.
    #[error(transparent)]
    Rta(#[from] rta::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A bug.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

impl From<jingteng_engine::datafusion::error::DataFusionError> for Error {
    fn from(e: jingteng_engine::datafusion::error::DataFusionError) -> Self {
        Self::Engine(e.into())
    }
}

impl From<jingteng_engine::datafusion::arrow::error::ArrowError> for Error {
    fn from(e: jingteng_engine::datafusion::arrow::error::ArrowError) -> Self {
        Self::Engine(e.into())
    }
}

impl From<jingteng_engine::datafusion::parquet::errors::ParquetError> for Error {
    fn from(e: jingteng_engine::datafusion::parquet::errors::ParquetError) -> Self {
        Self::Engine(e.into())
    }
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

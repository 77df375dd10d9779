//! Private identity matching for Jingteng: identifier normalisation, multi-party
//! ECDH-PSI over ristretto255, and multi-key linking — without I/O.
//!
//! - [`normalize`]: canonical forms of phones, e-mails and device ids, raw or hashed;
//!   rejected values are counted by [`Reject`] reason.
//! - [`Channel`], [`SecretKey`], [`Party`]: the exchange. Each value is hashed to the
//!   group under a domain of (collaboration, identifier type, digest), blinded by its
//!   owner and re-blinded by every other party; equal values end as equal 16-byte join
//!   keys. Batches travel as [`BlindedBatch`] bytes with a pinned wire format; a batch
//!   handed to the party that re-blinds last and keeps the join keys (the host) travels
//!   as a [`KeepBatch`], its rows as one-byte differences ([`encode_rows`]).
//! - [`link`]: the host's multi-key linking by priority, one record per party per person.
//! - [`Collaboration`]: the collaboration spec (TOML) that says who holds what.
//!
//! The design is in `docs/matching.md`; identifier rules in `docs/identifiers.md`.

mod group;
mod link;
pub mod normalize;
mod protocol;
mod rows;
mod spec;

pub use group::{Channel, SecretKey, decode, encode, join_key};
pub use link::{Contribution, Linked, link};
pub use normalize::{DeviceType, DigestBytes, DigestKind, Form, IdType, Normalized, Reject};
pub use protocol::{BlindedBatch, KeepBatch, MAX_BATCH, MAX_CHANNEL_NAME, Party, Pending};
pub use rows::{decode_rows, encode_rows};
pub use spec::{
    AGGREGATES, CONSENT_SCOPES, Collaboration, CollaborationSection, DeviceKinds, Identifier,
    IdentifierSection, Party as SpecParty, PartySection, Privacy, PrivacySection, ReleaseMode,
    SpecFile, Table, TableSection,
};

/// Errors of the matching core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes that are not a valid ristretto255 point (or are the identity).
    #[error("invalid group element")]
    InvalidPoint,
    /// A batch from a peer holds an invalid point.
    #[error("peer sent an invalid group element at position {index}")]
    InvalidPointAt {
        /// Position in the batch.
        index: usize,
    },
    /// A message that is shorter or longer than its header says.
    #[error("truncated message: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes the header announces.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// A message that does not start with the protocol's magic bytes.
    #[error("not a Jingteng PSI batch (bad magic bytes)")]
    BadMagic,
    /// A batch with more points than allowed.
    #[error("batch of {count} points exceeds the maximum of {max}")]
    TooLarge {
        /// Points announced.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A returned batch whose size differs from the one sent.
    #[error("returned batch has {got} points, {expected} were sent")]
    BatchMismatch {
        /// Points sent.
        expected: usize,
        /// Points returned.
        got: usize,
    },
    /// A message whose content breaks its format (rows out of order, a bad name…).
    #[error("malformed message: {what}")]
    Malformed {
        /// What is wrong.
        what: String,
    },
    /// A collaboration spec that cannot be used.
    #[error("collaboration spec: {0}")]
    Spec(String),
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Audiences across nodes: a member defines an audience at the host of a collaboration,
//! the host evaluates it on its joined view and releases only its size (under the
//! collaboration's privacy rules, charged to `party:analyst`), and on delivery sends the
//! activation party — and no one else — the rows of its own identity table that hold
//! the audience's people. The activation party turns the rows into its own user ids
//! from its import, leaves out the people it has recorded as opted out or deleted, and
//! keeps each version in its node directory.
//!
//! On disk, under `DIR/audiences/<digest of the collaboration id>/` (the layout of
//! [`jingteng_audience::Store`]):
//!
//! ```text
//! audiences/<name>/definition.toml   at the host: the definition
//! audiences/<name>/versions.json     at the host: each version (size class, released size)
//! audiences/<name>/owner.json        at the host: the member (and analyst) that defined it
//! audiences/<name>/refresh.json      at the host: the last scheduled refresh (crate::refresh)
//! delivered/<party>/<name>/v<N>.parquet   at the activation party: its user ids
//! delivered/<party>/<name>/manifest.json  at the activation party: versions, users, SHA-256
//! ```
//!
//! The host → activation party message is binary ([`ActivationBatch`],
//! `application/vnd.jingteng.audience-rows.v1`); its decoder takes any bytes and
//! answers a typed error, never a panic.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use jingteng_audience::{
    Definition, DefinitionFile, LookalikeReport, SizeRelease, Store, VersionRecord,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contract::ContractBody;
use crate::remote::{Problem, internal, open_engine, refusal};
use crate::{Error, NodeDir, Result, hex};

/// Media type of the host's message to the activation party.
pub const ACTIVATION_TYPE: &str = "application/vnd.jingteng.audience-rows.v1";

/// The first bytes of an activation message.
const MAGIC: &[u8; 4] = b"JTAR";
/// Its wire version.
const WIRE_VERSION: u8 = 1;
/// Largest JSON header.
const MAX_HEADER: usize = 16 << 10;
/// Most rows one activation message carries (64 Mi people; 256 MiB of rows).
pub const MAX_ACTIVATION_ROWS: usize = 1 << 26;
/// Largest activation body.
pub(crate) const MAX_ACTIVATION_BYTES: usize = 4 + 1 + 4 + MAX_HEADER + 4 + 4 * MAX_ACTIVATION_ROWS;

/// Where a node keeps the audiences of a collaboration (both the host's definitions
/// and the versions delivered to it): `DIR/audiences/<digest of the id>/`.
pub fn audiences_dir(dir: &Path, collaboration: &str) -> PathBuf {
    let digest = Sha256::digest(collaboration.as_bytes());
    dir.join("audiences").join(hex(&digest[..8]))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------------------------
// Requests and replies between a member and the host (JSON).

/// A member's new audience, for the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAudience {
    /// The definition (docs/audiences.md).
    pub definition: DefinitionFile,
    /// Who asks, within the calling member (the size's ε is charged to `party:analyst`).
    #[serde(default = "default_analyst")]
    pub analyst: String,
}

/// A member's request to deliver the next version of an audience.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverAudience {
    /// Who asks, within the calling member.
    #[serde(default = "default_analyst")]
    pub analyst: String,
}

fn default_analyst() -> String {
    "analyst".into()
}

/// One rule and the SQL the host ran it as.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleSql {
    /// `include …` or `exclude …`, as written.
    pub rule: String,
    /// The SQL at the host.
    pub sql: String,
}

/// The host's answer to [`CreateAudience`]: the size as released, never the people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AudienceCreated {
    /// The audience.
    pub name: String,
    /// Its activation party.
    pub activate: String,
    /// The member that defined it.
    pub owner: String,
    /// Its rules and their SQL.
    pub rules: Vec<RuleSql>,
    /// The size class (never the exact size).
    pub size_class: String,
    /// The size as released through the engine.
    pub size: SizeRelease,
    /// The look-alike's held-out figures.
    pub lookalike: Option<LookalikeReport>,
}

/// An audience as the host lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AudienceSummary {
    /// The audience.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Its activation party.
    pub activate: String,
    /// The member that defined it.
    pub owner: String,
    /// When it was defined, Unix ms.
    pub created_ms: i64,
    /// Its size class, as of its latest version (or its definition when it has none).
    pub size_class: Option<String>,
    /// Its size as last released (at its latest version, or when it was defined).
    pub released_people: Option<i64>,
    /// How that size was released (`dp` or `threshold`).
    pub release_mode: Option<String>,
    /// Every delivered version, oldest first.
    pub versions: Vec<VersionRecord>,
    /// Its scheduled refresh (`refresh = "24h"`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<crate::refresh::RefreshStatus>,
}

/// An audience's definition and versions, from the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AudienceDetail {
    /// The definition.
    pub definition: DefinitionFile,
    /// The member that defined it.
    pub owner: String,
    /// Every delivered version, oldest first.
    pub versions: Vec<VersionRecord>,
    /// Its scheduled refresh (`refresh = "24h"`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<crate::refresh::RefreshStatus>,
}

/// The host's answer to [`DeliverAudience`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AudienceDelivered {
    /// The version recorded.
    pub record: VersionRecord,
    /// The size as released.
    pub size: SizeRelease,
    /// Whether the activation party sent the version's device tokens to the audience's
    /// owner for its RTA index (docs/audiences.md, "RTA between nodes").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rta: Option<crate::rta::RtaPush>,
}

/// Who defined an audience, and its size as released when it was defined.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Owner {
    pub(crate) party: String,
    /// The analyst within `party` who defined it: scheduled refreshes are charged to
    /// `party:analyst`. Absent in audiences defined before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) analyst: Option<String>,
    pub(crate) created_ms: i64,
    #[serde(default)]
    size_class: Option<String>,
    #[serde(default)]
    released_people: Option<i64>,
    #[serde(default)]
    release_mode: Option<String>,
}

// ---------------------------------------------------------------------------------
// The activation message (host → activation party), binary.

/// What an activation message says besides its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationHeader {
    /// The collaboration.
    pub collaboration: String,
    /// The audience.
    pub audience: String,
    /// Its version, from 1.
    pub version: u32,
    /// Rows the activation party's identity table had in the match the view stands
    /// on: the rows are numbers below it, in that numbering.
    pub records: u32,
    /// The view (match run) it was evaluated on.
    pub view: String,
    /// When the host evaluated it, Unix ms.
    pub created_ms: i64,
    /// The member that defined the audience: the activation party sends it the
    /// version's device tokens for its RTA index (empty: nobody, as from an older host).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
}

/// The host's message to the activation party: the rows of that party's identity
/// table (in the match's numbering) of the audience's people, strictly increasing.
///
/// Wire format, version 1: `"JTAR"`, the byte `1`, the header's length (u32,
/// big-endian, at most 16 KiB), the header as JSON, the number of rows (u32,
/// big-endian, at most 2^26), then each row (u32, big-endian).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationBatch {
    /// The header.
    pub header: ActivationHeader,
    /// The rows, strictly increasing, each below `header.records`.
    pub rows: Vec<u32>,
}

/// What is wrong with an activation message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// It ends before what it announces.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// Not an activation message of a version this node reads.
    #[error("not a jingteng audience-rows v1 message")]
    BadMagic,
    /// A length over its bound.
    #[error("{what} is {got}, more than the {max} allowed")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its value.
        got: usize,
        /// The bound.
        max: usize,
    },
    /// The header is not the JSON expected.
    #[error("header: {0}")]
    Header(String),
    /// Rows out of order or repeated.
    #[error("row {row} at position {at} does not follow {prev}: rows must be strictly increasing")]
    Unordered {
        /// Position.
        at: usize,
        /// The row before.
        prev: u32,
        /// The row.
        row: u32,
    },
    /// A row the identity table does not have.
    #[error("row {row} is not below the {records} records of the identity table")]
    OutOfRange {
        /// The row.
        row: u32,
        /// The header's record count.
        records: u32,
    },
    /// Bytes after the last row.
    #[error("{0} bytes after the last row")]
    Trailing(usize),
}

impl ActivationBatch {
    /// The message's bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let header =
            serde_json::to_vec(&self.header).map_err(|e| Error::Internal(e.to_string()))?;
        if header.len() > MAX_HEADER || self.rows.len() > MAX_ACTIVATION_ROWS {
            return Err(Error::Internal(format!(
                "an activation message of {} header bytes and {} rows is over the bounds",
                header.len(),
                self.rows.len()
            )));
        }
        let mut out = Vec::with_capacity(13 + header.len() + 4 * self.rows.len());
        out.extend_from_slice(MAGIC);
        out.push(WIRE_VERSION);
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&(self.rows.len() as u32).to_be_bytes());
        for r in &self.rows {
            out.extend_from_slice(&r.to_be_bytes());
        }
        Ok(out)
    }

    /// Reads a message; anything malformed is an [`ActivationError`].
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, ActivationError> {
        let mut rest = bytes;
        let magic = take(&mut rest, 5, "the magic")?;
        if &magic[..4] != MAGIC || magic[4] != WIRE_VERSION {
            return Err(ActivationError::BadMagic);
        }
        let hlen = u32_at(&mut rest, "the header length")? as usize;
        if hlen > MAX_HEADER {
            return Err(ActivationError::TooLarge {
                what: "the header",
                got: hlen,
                max: MAX_HEADER,
            });
        }
        let header: ActivationHeader = serde_json::from_slice(take(&mut rest, hlen, "the header")?)
            .map_err(|e| ActivationError::Header(e.to_string()))?;
        let n = u32_at(&mut rest, "the row count")? as usize;
        if n > MAX_ACTIVATION_ROWS {
            return Err(ActivationError::TooLarge {
                what: "the row count",
                got: n,
                max: MAX_ACTIVATION_ROWS,
            });
        }
        let body = take(&mut rest, 4 * n, "the rows")?;
        if !rest.is_empty() {
            return Err(ActivationError::Trailing(rest.len()));
        }
        let mut rows = Vec::with_capacity(n);
        for (at, chunk) in body.chunks_exact(4).enumerate() {
            let row = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            if let Some(&prev) = rows.last()
                && row <= prev
            {
                return Err(ActivationError::Unordered { at, prev, row });
            }
            if row >= header.records {
                return Err(ActivationError::OutOfRange {
                    row,
                    records: header.records,
                });
            }
            rows.push(row);
        }
        Ok(Self { header, rows })
    }
}

/// The part of a binary peer message that was cut short.
pub(crate) struct Truncated(pub(crate) &'static str);

impl From<Truncated> for ActivationError {
    fn from(t: Truncated) -> Self {
        ActivationError::Truncated(t.0)
    }
}

/// The next `n` bytes of a binary peer message (`what` names them if they are missing).
pub(crate) fn take<'a>(
    rest: &mut &'a [u8],
    n: usize,
    what: &'static str,
) -> std::result::Result<&'a [u8], Truncated> {
    if rest.len() < n {
        return Err(Truncated(what));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

/// The next big-endian `u32` of a binary peer message.
pub(crate) fn u32_at(rest: &mut &[u8], what: &'static str) -> std::result::Result<u32, Truncated> {
    let b = take(rest, 4, what)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

// ---------------------------------------------------------------------------------
// The host's side.

pub(crate) fn problem_of(e: jingteng_audience::Error) -> Problem {
    use jingteng_audience::Error as A;
    match e {
        A::Rule { .. } => (StatusCode::BAD_REQUEST, "bad-rule", e.to_string()),
        A::Definition(_) => (StatusCode::BAD_REQUEST, "bad-definition", e.to_string()),
        A::RuleRefused { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "refused", e.to_string()),
        A::TooSmall { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "audience-too-small",
            e.to_string(),
        ),
        A::Lookalike(_) => (StatusCode::UNPROCESSABLE_ENTITY, "lookalike", e.to_string()),
        A::Consent { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "consent", e.to_string()),
        A::Unknown(_) => (StatusCode::NOT_FOUND, "unknown-audience", e.to_string()),
        A::Engine(e) => refusal(e),
        other => internal(&other),
    }
}

fn owner_path(store_root: &Path, name: &str) -> PathBuf {
    store_root.join("audiences").join(name).join("owner.json")
}

pub(crate) fn read_owner(
    store_root: &Path,
    name: &str,
) -> std::result::Result<Option<Owner>, Problem> {
    let path = owner_path(store_root, name);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| internal(&format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(internal(&format!("{}: {e}", path.display()))),
    }
}

/// Writes `bytes` to `path` through a temporary file, synced, renamed into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Appends an audit entry (counts and names, never people).
pub(crate) fn audit(
    dir: &Path,
    actor: &str,
    action: &str,
    subject: &str,
    details: serde_json::Value,
) -> std::result::Result<(), Problem> {
    NodeDir::open(dir)
        .and_then(|n| n.catalog())
        .and_then(|mut c| Ok(c.audit(actor, action, subject, &details)?))
        .map(|_| ())
        .map_err(|e| internal(&format!("audit log: {e}")))
}

/// `POST /v1/collaborations/{id}/audiences` at the host: checks the definition with
/// the policy, evaluates it on the joined view, releases its size as `caller:analyst`
/// and keeps the definition.
pub(crate) async fn create(
    dir: &Path,
    body: &ContractBody,
    caller: &str,
    req: CreateAudience,
    lock: &tokio::sync::Mutex<()>,
) -> std::result::Result<AudienceCreated, Problem> {
    let def = Definition::from_file(req.definition).map_err(problem_of)?;
    let root = audiences_dir(dir, &body.collaboration);
    let _guard = lock.lock().await;
    if let Some(o) = read_owner(&root, def.name())?
        && o.party != caller
    {
        return Err((
            StatusCode::FORBIDDEN,
            "not-the-owner",
            format!(
                "audience {:?} was defined by {}; choose another name",
                def.name(),
                o.party
            ),
        ));
    }
    let (mut engine, _, analyst) = open_engine(dir, body, caller, &req.analyst).await?;
    let now = now_ms();
    let eval = jingteng_audience::evaluate(&engine, &def, now / 1000, None)
        .await
        .map_err(|e| {
            if let jingteng_audience::Error::TooSmall { class, .. } = &e
                && let Err(p) = audit(
                    dir,
                    caller,
                    "audience-refused",
                    &body.collaboration,
                    serde_json::json!({"audience": def.name(), "size_class": class}),
                )
            {
                return p;
            }
            problem_of(e)
        })?;
    let size = jingteng_audience::release_size(&mut engine, &eval, &analyst)
        .await
        .map_err(problem_of)?;
    let store = Store::new(&root);
    store.save(&def).map_err(problem_of)?;
    let owner = Owner {
        party: caller.to_string(),
        analyst: Some(req.analyst.clone()),
        created_ms: now,
        size_class: Some(eval.size_class()),
        released_people: size.people,
        release_mode: Some(size.release.mode.clone()),
    };
    let json = serde_json::to_vec_pretty(&owner).map_err(|e| internal(&e))?;
    write_atomic(&owner_path(&root, def.name()), &json).map_err(|e| internal(&e))?;
    audit(
        dir,
        caller,
        "audience-create",
        &body.collaboration,
        serde_json::json!({
            "audience": def.name(),
            "activate": def.activate(),
            "analyst": analyst,
            "size_class": eval.size_class(),
            "released_people": size.people,
            "release": size.release.mode,
            "refresh": def.refresh().map(|r| r.to_string()),
        }),
    )?;
    Ok(AudienceCreated {
        name: def.name().to_string(),
        activate: def.activate().to_string(),
        owner: caller.to_string(),
        rules: eval
            .rules()
            .iter()
            .map(|(rule, sql)| RuleSql {
                rule: rule.clone(),
                sql: sql.clone(),
            })
            .collect(),
        size_class: eval.size_class(),
        size,
        lookalike: eval.lookalike().cloned(),
    })
}

/// `GET /v1/collaborations/{id}/audiences` at the host.
pub(crate) fn list(
    dir: &Path,
    body: &ContractBody,
) -> std::result::Result<Vec<AudienceSummary>, Problem> {
    let root = audiences_dir(dir, &body.collaboration);
    let store = Store::new(&root);
    let mut out = Vec::new();
    for name in store.names().map_err(problem_of)? {
        let def = store.definition(&name).map_err(problem_of)?;
        let owner = read_owner(&root, &name)?;
        let versions = store.versions(&name).map_err(problem_of)?;
        let refresh = crate::refresh::status(&root, &def, owner.as_ref(), &versions);
        let (size_class, released_people, release_mode) = match versions.last() {
            Some(v) => (
                Some(v.size_class.clone()),
                v.released_people,
                Some(v.release_mode.clone()),
            ),
            None => owner.as_ref().map_or((None, None, None), |o| {
                (
                    o.size_class.clone(),
                    o.released_people,
                    o.release_mode.clone(),
                )
            }),
        };
        out.push(AudienceSummary {
            description: def.file().description.clone(),
            activate: def.activate().to_string(),
            owner: owner.as_ref().map(|o| o.party.clone()).unwrap_or_default(),
            created_ms: owner.as_ref().map_or(0, |o| o.created_ms),
            size_class,
            released_people,
            release_mode,
            versions,
            refresh,
            name,
        });
    }
    Ok(out)
}

/// `GET /v1/collaborations/{id}/audiences/{name}` at the host.
pub(crate) fn show(
    dir: &Path,
    body: &ContractBody,
    name: &str,
) -> std::result::Result<AudienceDetail, Problem> {
    let root = audiences_dir(dir, &body.collaboration);
    let store = Store::new(&root);
    let def = store.definition(name).map_err(problem_of)?;
    let owner = read_owner(&root, name)?;
    let versions = store.versions(name).map_err(problem_of)?;
    Ok(AudienceDetail {
        definition: def.file().clone(),
        refresh: crate::refresh::status(&root, &def, owner.as_ref(), &versions),
        owner: owner.map(|o| o.party).unwrap_or_default(),
        versions,
    })
}

/// Whether an audience name can name files (what [`Definition`] accepts).
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b))
}

/// `POST /v1/collaborations/{id}/audiences/{name}/deliver` at the host: checks the
/// consent scope of every dataset the audience reads, evaluates it again on the current
/// view, releases its size, sends the activation party its own rows, and records the
/// version.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deliver(
    node: &NodeDir,
    body: &ContractBody,
    caller: &str,
    name: &str,
    req: DeliverAudience,
    retry: crate::RetryPolicy,
    halt: &crate::retry::Halt,
    lock: &tokio::sync::Mutex<()>,
) -> std::result::Result<AudienceDelivered, Problem> {
    let dir = node.dir();
    if !valid_name(name) {
        return Err((
            StatusCode::NOT_FOUND,
            "unknown-audience",
            "no audience by this name".into(),
        ));
    }
    let _guard = lock.lock().await;
    let done = deliver_locked(
        node,
        body,
        caller,
        name,
        &req.analyst,
        now_ms(),
        retry,
        halt,
    )
    .await?;
    audit(
        dir,
        caller,
        "audience-deliver",
        &body.collaboration,
        serde_json::json!({
            "audience": name,
            "version": done.record.version,
            "to": done.record.to,
            "analyst": format!("{caller}:{}", req.analyst),
            "size_class": done.record.size_class,
            "released_people": done.size.people,
        }),
    )?;
    Ok(done)
}

/// [`deliver`]'s work, with the audiences' lock held by the caller and the clock
/// (`now`, Unix ms: the version's time) given: the scheduled refresh
/// ([`crate::refresh`]) takes this path too, charging `caller:analyst`. The caller
/// audits what it did.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deliver_locked(
    node: &NodeDir,
    body: &ContractBody,
    caller: &str,
    name: &str,
    analyst: &str,
    now: i64,
    retry: crate::RetryPolicy,
    halt: &crate::retry::Halt,
) -> std::result::Result<AudienceDelivered, Problem> {
    let dir = node.dir();
    let root = audiences_dir(dir, &body.collaboration);
    let store = Store::new(&root);
    let def = store.definition(name).map_err(problem_of)?;
    let collab = jingteng_psi::Collaboration::parse(&body.spec).map_err(|e| internal(&e))?;
    let (mut engine, _, analyst) = open_engine(dir, body, caller, analyst).await?;
    let tables: Vec<String> = def.tables(engine.policy()).into_iter().collect();
    jingteng_audience::check_consent(&collab, &def, &tables).map_err(problem_of)?;
    let eval = jingteng_audience::evaluate(&engine, &def, now / 1000, None)
        .await
        .map_err(problem_of)?;
    let size = jingteng_audience::release_size(&mut engine, &eval, &analyst)
        .await
        .map_err(problem_of)?;
    let party = def.activate().to_string();
    let card = body
        .members
        .iter()
        .find(|m| m.party == party)
        .ok_or_else(|| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad-definition",
                format!("the activation party {party} is not a member of the contract"),
            )
        })?;
    let view = crate::view_dir(dir, collab.id());
    let info = jingteng_engine::view::load(&view).map_err(|e| internal(&e))?;
    let records =
        *info.report.records.get(&party).ok_or_else(|| {
            internal(&format!("the match report has no record count for {party}"))
        })?;
    if !jingteng_engine::view::rows_path(&view, &party).exists() {
        return Err((
            StatusCode::CONFLICT,
            "no-view",
            format!(
                "the host's joined view of {} keeps no rows of {party}'s identity table (it was built by an older version): the host runs `jingteng match --collab {}` again",
                collab.id(),
                collab.id()
            ),
        ));
    }
    let rows_of = jingteng_engine::view::person_rows(&view, &party).map_err(|e| internal(&e))?;
    let mut rows = Vec::with_capacity(eval.members().len());
    for p in eval.members() {
        let row = rows_of.get(p).ok_or_else(|| {
            internal(&format!(
                "a person of the audience has no row of {party}'s identity table"
            ))
        })?;
        rows.push(*row);
    }
    rows.sort_unstable();
    rows.dedup();
    let version = store
        .versions(name)
        .map_err(problem_of)?
        .last()
        .map_or(1, |v| v.version + 1);
    let batch = ActivationBatch {
        header: ActivationHeader {
            collaboration: body.collaboration.clone(),
            audience: name.to_string(),
            version,
            records: u32::try_from(records)
                .map_err(|_| internal(&"more than 4 billion records"))?,
            view: engine.fingerprint().to_string(),
            created_ms: now,
            owner: read_owner(&root, name)?
                .map(|o| o.party)
                .unwrap_or_default(),
        },
        rows,
    };
    let bytes = batch.encode().map_err(|e| internal(&e))?;
    let path = format!("/v1/collaborations/{}/activate", body.collaboration);
    let call = crate::retry::Call {
        method: hyper::Method::POST,
        path: &path,
        body: Some((ACTIVATION_TYPE, bytes.into())),
    };
    let (status, answer) = crate::retry::call_peer(node, card, &call, retry, halt, &|_| {})
        .await
        .map_err(|e| {
            (
                StatusCode::BAD_GATEWAY,
                "activation-failed",
                format!("delivering to {party}: {e}"),
            )
        })?;
    if status != 200 {
        return Err((
            StatusCode::BAD_GATEWAY,
            "activation-failed",
            format!(
                "{party} refused the delivery ({status}): {}",
                crate::retry::problem_detail(&answer)
            ),
        ));
    }
    let record = VersionRecord {
        version,
        created_ms: now,
        view_fingerprint: engine.fingerprint().to_string(),
        to: party.clone(),
        // Where the activation party keeps it, relative to its node directory.
        file: audiences_dir(Path::new(""), &body.collaboration)
            .join("delivered")
            .join(&party)
            .join(name)
            .join(format!("v{version}.parquet"))
            .to_string_lossy()
            .into_owned(),
        size_class: eval.size_class(),
        released_people: size.people,
        release_mode: size.release.mode.clone(),
        lookalike: eval.lookalike().cloned(),
    };
    store
        .record_version(name, record.clone())
        .map_err(problem_of)?;
    let rta = serde_json::from_slice::<Activated>(&answer)
        .ok()
        .and_then(|a| a.rta);
    Ok(AudienceDelivered { record, size, rta })
}

// ---------------------------------------------------------------------------------
// The activation party's side.

/// What the activation party answers the host (no count of people: the host has the
/// size class, the activation party keeps the rest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Activated {
    pub(crate) version: u32,
    /// What became of the token list for the owner's RTA index (no count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rta: Option<crate::rta::RtaPush>,
}

/// What the activation party still has to do after writing a version: send the
/// owner its tokens, or say why there are none.
#[derive(Debug)]
pub(crate) enum RtaPending {
    /// Send this list to this owner.
    Send(String, crate::rta::TokenList),
    /// Nothing to send; the reason.
    Skip(crate::rta::RtaPush),
}

/// `POST /v1/collaborations/{id}/activate` at the activation party: turns the host's
/// rows into this node's user ids (from its latest import of its identity table, which
/// must have as many rows as the match numbered), leaves out records it has recorded
/// as opted out or deleted (and those its `opt_out_column` flags), and writes the
/// version atomically.
pub(crate) fn activate(
    node: &NodeDir,
    body: &ContractBody,
    batch: ActivationBatch,
) -> std::result::Result<(Activated, RtaPending), Problem> {
    let h = &batch.header;
    if h.collaboration != body.collaboration {
        return Err((
            StatusCode::BAD_REQUEST,
            "bad-delivery",
            format!(
                "the message is for collaboration {:?}, sent to {:?}",
                h.collaboration, body.collaboration
            ),
        ));
    }
    if !valid_name(&h.audience) || h.version == 0 {
        return Err((
            StatusCode::BAD_REQUEST,
            "bad-delivery",
            "the audience name or version is not valid".into(),
        ));
    }
    let me = node.config().party.clone();
    let collab = jingteng_psi::Collaboration::parse(&body.spec).map_err(|e| internal(&e))?;
    let party = collab
        .parties()
        .iter()
        .find(|p| p.name == me)
        .ok_or_else(|| {
            (
                StatusCode::CONFLICT,
                "not-a-party",
                format!("{me} contributes no data to {}", collab.id()),
            )
        })?;
    let rid = party
        .identity
        .record_id
        .clone()
        .ok_or_else(|| internal(&format!("{me}'s identity table has no record_id")))?;
    let identity =
        crate::share::latest_import(node, &party.identity.name).map_err(|e| internal(&e))?;
    let wanted = &batch.rows;
    // Forgotten here: opt-outs and deletions recorded at this node for this collaboration.
    let forgotten: HashSet<String> = node
        .catalog()
        .and_then(|c| Ok(c.forget_requests(collab.id())?))
        .map_err(|e| internal(&e))?
        .into_iter()
        .filter(|r| r.party == me)
        .map(|r| r.record_id)
        .collect();
    let flag = party.identity.opt_out_column.clone();
    let mut ids = Vec::with_capacity(wanted.len());
    let mut left_out = 0u64;
    let mut row: u64 = 0;
    let mut next = 0usize;
    for b in crate::share::read_parquet(&identity).map_err(|e| internal(&e))? {
        let b = b.map_err(|e| internal(&e))?;
        let col = crate::share::text_column(&b, &rid, &identity).map_err(|e| internal(&e))?;
        let opted = flag.as_deref().and_then(|f| {
            b.column_by_name(f)
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
        });
        let end = row + b.num_rows() as u64;
        while next < wanted.len() && u64::from(wanted[next]) < end {
            let i = (u64::from(wanted[next]) - row) as usize;
            next += 1;
            if !arrow::array::Array::is_valid(col, i) {
                continue;
            }
            let id = col.value(i);
            let flagged = opted.is_some_and(|o| {
                arrow::array::Array::is_valid(o, i)
                    && matches!(
                        o.value(i).trim().to_ascii_lowercase().as_str(),
                        "true" | "1" | "yes" | "y"
                    )
            });
            if flagged || forgotten.contains(id) {
                left_out += 1;
                continue;
            }
            ids.push(id.to_string());
        }
        row = end;
    }
    if row != u64::from(h.records) {
        return Err((
            StatusCode::CONFLICT,
            "identity-changed",
            format!(
                "{me}'s latest import of {} has {row} records; the match the host's view stands on numbered {}: run the match again (`jingteng match --collab {}`) before delivering",
                party.identity.name,
                h.records,
                collab.id()
            ),
        ));
    }
    ids.sort();
    let store = Store::new(audiences_dir(node.dir(), collab.id()));
    let entry = store
        .write_delivered(&me, &h.audience, h.version, &rid, &ids, now_ms())
        .map_err(|e| internal(&e))?;
    audit(
        node.dir(),
        &me,
        "audience-receive",
        collab.id(),
        serde_json::json!({
            "audience": h.audience,
            "version": h.version,
            "users": entry.users,
            "left_out": left_out,
            "sha256": entry.sha256,
            "view": h.view,
        }),
    )?;
    // The version's device tokens, for the owner's RTA index.
    let pending = if h.owner.is_empty() {
        RtaPending::Skip(crate::rta::RtaPush {
            owner: String::new(),
            pushed: false,
            detail: Some("the host named no owner: no RTA tokens were sent".into()),
        })
    } else {
        match crate::rta::tokens_of(node, &collab, &identity, &ids) {
            Ok(tokens) => RtaPending::Send(
                h.owner.clone(),
                crate::rta::TokenList {
                    header: crate::rta::TokenHeader {
                        collaboration: h.collaboration.clone(),
                        audience: h.audience.clone(),
                        version: h.version,
                        kind: crate::rta::TokenKind::List,
                    },
                    tokens,
                },
            ),
            Err(e) => RtaPending::Skip(crate::rta::RtaPush {
                owner: h.owner.clone(),
                pushed: false,
                detail: Some(format!("no RTA tokens: {e}")),
            }),
        }
    };
    Ok((
        Activated {
            version: h.version,
            rta: None,
        },
        pending,
    ))
}

// ---------------------------------------------------------------------------------
// The client side: a member asks the host.

/// Asks the host of `collaboration` to create an audience, as this node's member.
pub async fn audience_create(
    node: &NodeDir,
    collaboration: &str,
    req: &CreateAudience,
) -> Result<AudienceCreated> {
    crate::remote::post_host(node, collaboration, "audiences", req).await
}

/// The audiences the host of `collaboration` keeps.
pub async fn audience_list(node: &NodeDir, collaboration: &str) -> Result<Vec<AudienceSummary>> {
    crate::remote::call_host(node, collaboration, hyper::Method::GET, "audiences", None).await
}

/// One audience's definition and versions, from the host.
pub async fn audience_show(
    node: &NodeDir,
    collaboration: &str,
    name: &str,
) -> Result<AudienceDetail> {
    if !valid_name(name) {
        return Err(Error::Contract(format!(
            "{name:?} is not an audience name (1–64 of a-z 0-9 - _)"
        )));
    }
    crate::remote::call_host(
        node,
        collaboration,
        hyper::Method::GET,
        &format!("audiences/{name}"),
        None,
    )
    .await
}

/// Asks the host to deliver the next version of an audience to its activation party.
pub async fn audience_deliver(
    node: &NodeDir,
    collaboration: &str,
    name: &str,
    req: &DeliverAudience,
) -> Result<AudienceDelivered> {
    if !valid_name(name) {
        return Err(Error::Contract(format!(
            "{name:?} is not an audience name (1–64 of a-z 0-9 - _)"
        )));
    }
    crate::remote::post_host(
        node,
        collaboration,
        &format!("audiences/{name}/deliver"),
        req,
    )
    .await
}

/// What [`forget_here`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetHere {
    /// The request as recorded.
    pub recorded: jingteng_audience::ForgetReport,
    /// Entries removed from versions already delivered to this node (deletions only).
    pub removed_from_delivered_versions: u64,
}

/// Records an opt-out or a deletion of one of this node's own records (its party's
/// record id) for `collaboration`, in its catalog (audited, without the id): every
/// audience version delivered to this node from then on leaves the person out. A
/// deletion also rewrites the versions this node already holds without them.
pub fn forget_here(
    node: &NodeDir,
    collaboration: &str,
    record_id: &str,
    kind: jingteng_audience::ForgetKind,
) -> Result<ForgetHere> {
    let body = crate::server::active_contract(node, collaboration)?;
    let collab = jingteng_psi::Collaboration::parse(&body.spec)
        .map_err(|e| Error::Contract(e.to_string()))?;
    let me = node.config().party.clone();
    let party = collab
        .parties()
        .iter()
        .find(|p| p.name == me)
        .ok_or_else(|| Error::Contract(format!("{me} contributes no data to {collaboration}")))?;
    let mut catalog = node.catalog()?;
    let recorded =
        jingteng_audience::forget(&mut catalog, &collab, &me, record_id, kind, "operator")
            .map_err(|e| Error::Contract(e.to_string()))?;
    let removed_from_delivered_versions = if kind == jingteng_audience::ForgetKind::Delete {
        let column = party.identity.record_id.clone().unwrap_or_default();
        let gone: HashSet<String> = [record_id.trim().to_string()].into_iter().collect();
        Store::new(audiences_dir(node.dir(), collaboration))
            .remove_delivered(&me, &gone, &column)
            .map_err(|e| Error::Internal(e.to_string()))?
    } else {
        0
    };
    Ok(ForgetHere {
        recorded,
        removed_from_delivered_versions,
    })
}

/// The versions delivered to this node (as an activation party) in `collaboration`:
/// per audience, its versions as the manifest lists them.
pub fn delivered_here(
    node: &NodeDir,
    collaboration: &str,
) -> Result<Vec<(String, Vec<jingteng_audience::DeliveredVersion>)>> {
    Store::new(audiences_dir(node.dir(), collaboration))
        .delivered(&node.config().party)
        .map_err(|e| Error::Internal(e.to_string()))
}

/// The user ids of one delivered version at this node.
pub fn delivered_ids(
    node: &NodeDir,
    collaboration: &str,
    audience: &str,
    version: u32,
) -> Result<Vec<String>> {
    Store::new(audiences_dir(node.dir(), collaboration))
        .delivered_version_ids(&node.config().party, audience, version)
        .map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> ActivationBatch {
        ActivationBatch {
            header: ActivationHeader {
                collaboration: "c".into(),
                audience: "a".into(),
                version: 2,
                records: 10,
                view: "r".into(),
                created_ms: 5,
                owner: "b".into(),
            },
            rows: vec![1, 3, 9],
        }
    }

    #[test]
    fn the_wire_format_is_pinned() {
        let bytes = sample().encode().unwrap();
        let header =
            br#"{"collaboration":"c","audience":"a","version":2,"records":10,"view":"r","created_ms":5,"owner":"b"}"#;
        let mut want = b"JTAR\x01".to_vec();
        want.extend_from_slice(&(header.len() as u32).to_be_bytes());
        want.extend_from_slice(header);
        want.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 9]);
        assert_eq!(bytes, want);
        assert_eq!(ActivationBatch::decode(&bytes).unwrap(), sample());
        // Without an owner (an older host), the field is left out and reads as empty.
        let mut old = sample();
        old.header.owner.clear();
        let bytes = old.encode().unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("owner"));
        assert_eq!(ActivationBatch::decode(&bytes).unwrap(), old);
    }

    /// Random corruptions of a valid message (a cheap stand-in for the fuzz target in
    /// `fuzz/fuzz_targets/activation.rs`): never a panic, and whatever decodes keeps
    /// the invariants.
    #[test]
    fn corrupted_messages_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let good = sample().encode().unwrap();
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..rng.random_range(1..4) {
                match rng.random_range(0..3) {
                    0 => {
                        let i = rng.random_range(0..b.len());
                        b[i] = rng.random();
                    }
                    1 => b.truncate(rng.random_range(0..b.len())),
                    _ => b.push(rng.random()),
                }
                if b.is_empty() {
                    break;
                }
            }
            if let Ok(batch) = ActivationBatch::decode(&b) {
                assert!(batch.rows.windows(2).all(|w| w[0] < w[1]));
                assert!(batch.rows.iter().all(|r| *r < batch.header.records));
            }
        }
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let good = sample().encode().unwrap();
        for n in 0..good.len() {
            assert!(ActivationBatch::decode(&good[..n]).is_err(), "prefix {n}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(
            ActivationBatch::decode(&extra),
            Err(ActivationError::Trailing(1))
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(
            ActivationBatch::decode(&bad),
            Err(ActivationError::BadMagic)
        );
        let mut unordered = sample();
        unordered.rows = vec![3, 3];
        assert!(matches!(
            ActivationBatch::decode(&unordered.encode().unwrap()),
            Err(ActivationError::Unordered { .. })
        ));
        let mut out = sample();
        out.rows = vec![10];
        assert!(matches!(
            ActivationBatch::decode(&out.encode().unwrap()),
            Err(ActivationError::OutOfRange { row: 10, .. })
        ));
        // A huge announced header or row count is refused before any allocation.
        let mut huge = b"JTAR\x01".to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            ActivationBatch::decode(&huge),
            Err(ActivationError::TooLarge { .. })
        ));
        let mut unknown = b"JTAR\x01".to_vec();
        let h = br#"{"collaboration":"c","audience":"a","version":1,"records":1,"view":"r","created_ms":5,"extra":1}"#;
        unknown.extend_from_slice(&(h.len() as u32).to_be_bytes());
        unknown.extend_from_slice(h);
        unknown.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            ActivationBatch::decode(&unknown),
            Err(ActivationError::Header(_))
        ));
    }
}

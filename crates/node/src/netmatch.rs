//! The networked match: the host asks every member to contribute; each member runs its
//! side of the PSI over its imported identity table, having every other member re-blind
//! its batches through their APIs, and sends its join keys and column tallies to the
//! host; the host links them and every member may fetch the report — and nothing more.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jingteng_match::{ColumnTally, Keyed, MatchReport, PartyContribution, Peers, Source};
use jingteng_psi::{BlindedBatch, Collaboration, KeepBatch, Party, SecretKey};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::contract::MemberCard;
use crate::retry::{Call, Halt, RetryPolicy};
use crate::share::SentTable;
use crate::{Error, NodeDir, Result, file_err, write_atomic};

/// A match run at the host. Its state outlives the process: the job in the catalog,
/// every contribution received in `runs/RUN/`, and the report once linked.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub(crate) collaboration: String,
    pub(crate) parts: BTreeMap<usize, PartyContribution>,
    pub(crate) report: Option<MatchReport>,
    pub(crate) error: Option<String>,
    /// When the run started (Unix ms), across restarts.
    pub(crate) started_ms: i64,
    /// The run's job in the host's catalog, while it is open.
    pub(crate) job: Option<i64>,
    /// Every contribution is in and the host is linking.
    pub(crate) linking: bool,
    /// The member the host is retrying, and how it is going.
    pub(crate) retrying: Option<String>,
    /// Times the job has been taken up: 1, plus one per resume after a restart.
    pub(crate) attempts: i64,
    /// Points each member handed the host to keep, per (party, attempt, channel, batch
    /// start), since this process took the run up: bounds what a member can have it keep.
    pub(crate) kept: BTreeMap<(usize, String, usize, u32), u64>,
}

/// What a GET of a run answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStatus {
    /// `running`, `retrying` (a member does not answer), `done` or `failed`.
    pub state: String,
    /// Parties whose contribution arrived.
    pub received: Vec<String>,
    /// The report, once done.
    pub report: Option<serde_json::Value>,
    /// What went wrong, if it failed.
    pub error: Option<String>,
    /// While retrying: which member, which attempt, what failed.
    #[serde(default)]
    pub retrying: Option<String>,
    /// Times the host has taken the run up: 1, plus one per restart it survived.
    #[serde(default)]
    pub attempts: i64,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Run {
    pub(crate) fn is_over(&self) -> bool {
        self.error.is_some() || self.report.is_some()
    }

    /// Marks the run failed (the first reason stands) and closes its job.
    pub(crate) fn fail(&mut self, dir: &Path, error: String) {
        let error = self.error.get_or_insert(error).clone();
        self.retrying = None;
        self.close_job(dir, Some(&error));
    }

    /// Moves the run's job to `done` (no error) or `failed`, once.
    pub(crate) fn close_job(&mut self, dir: &Path, error: Option<&str>) {
        if let (Some(job), Ok(node)) = (self.job.take(), NodeDir::open(dir))
            && let Ok(mut catalog) = node.catalog()
        {
            let _ = catalog.finish_job(job, error);
        }
    }

    /// Writes the run's progress (who has delivered, whom it is retrying) to its job.
    pub(crate) fn save_progress(&self, dir: &Path, run: &str, names: &[String]) {
        let Some(job) = self.job else { return };
        let progress = serde_json::json!({
            "run": run,
            "received": self.received(names),
            "retrying": self.retrying,
        });
        let state = if self.retrying.is_some() {
            "retrying"
        } else {
            "running"
        };
        if let Ok(node) = NodeDir::open(dir)
            && let Ok(mut catalog) = node.catalog()
        {
            let _ = catalog.update_job(job, state, &progress);
        }
    }

    fn received(&self, names: &[String]) -> Vec<String> {
        self.parts
            .keys()
            .filter_map(|p| names.get(*p).cloned())
            .collect()
    }

    pub(crate) fn status(&self, names: &[String]) -> RunStatus {
        RunStatus {
            state: if self.error.is_some() {
                "failed"
            } else if self.report.is_some() {
                "done"
            } else if self.retrying.is_some() {
                "retrying"
            } else {
                "running"
            }
            .into(),
            received: self.received(names),
            report: self
                .report
                .as_ref()
                .and_then(|r| serde_json::to_value(r).ok()),
            error: self.error.clone(),
            retrying: self.retrying.clone(),
            attempts: self.attempts,
        }
    }

    /// Time since the run started, across restarts.
    pub(crate) fn elapsed(&self) -> Duration {
        Duration::from_millis(u64::try_from(now_ms() - self.started_ms).unwrap_or(0))
    }
}

/// A run id as the host makes them: 16 lower-case hex digits (it names a directory).
pub(crate) fn valid_run_id(run: &str) -> bool {
    run.len() == 16
        && run
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a run's state lives at the host: `runs/RUN/`, mode 0700.
pub(crate) fn run_dir(dir: &Path, run: &str) -> PathBuf {
    dir.join("runs").join(run)
}

fn contribution_path(dir: &Path, run: &str, party: usize) -> PathBuf {
    run_dir(dir, run).join(format!("party-{party}.contrib"))
}

/// Keeps a member's contribution (its wire bytes) for a run, atomically.
pub(crate) fn store_contribution(dir: &Path, run: &str, party: usize, bytes: &[u8]) -> Result<()> {
    crate::private_dir(&run_dir(dir, run))?;
    write_atomic(&contribution_path(dir, run, party), bytes)
}

/// The contributions kept for a run, of parties `0..parties`.
pub(crate) fn load_contributions(
    dir: &Path,
    run: &str,
    parties: usize,
) -> Result<BTreeMap<usize, PartyContribution>> {
    let mut out = BTreeMap::new();
    for party in 0..parties {
        let path = contribution_path(dir, run, party);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(file_err(&path, e)),
        };
        let part = decode_contribution(&bytes).map_err(|e| file_err(&path, e))?;
        if part.party != party {
            return Err(file_err(&path, format!("holds party {}", part.party)));
        }
        out.insert(party, part);
    }
    Ok(out)
}

/// Removes a finished run's contributions and shared tables (join keys and row-level
/// columns are not kept past their use; the joined view holds what the host keeps).
pub(crate) fn discard_contributions(dir: &Path, run: &str, parties: usize) {
    for party in 0..parties {
        let _ = std::fs::remove_file(contribution_path(dir, run, party));
        let _ = std::fs::remove_dir_all(run_dir(dir, run).join(format!("party-{party}")));
    }
}

/// What each party says it shared for a run, from the contributions kept (in party
/// order; a party whose contribution is missing shared nothing).
pub(crate) fn load_sent(dir: &Path, run: &str, parties: usize) -> Result<Vec<Vec<SentTable>>> {
    (0..parties)
        .map(|party| {
            let path = contribution_path(dir, run, party);
            match std::fs::read(&path) {
                Ok(bytes) => decode_received(&bytes)
                    .map(|r| r.tables)
                    .map_err(|e| file_err(&path, e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(file_err(&path, e)),
            }
        })
        .collect()
}

fn report_path(dir: &Path, run: &str) -> PathBuf {
    run_dir(dir, run).join("report.json")
}

/// Keeps a run's report, atomically.
pub(crate) fn store_report(dir: &Path, run: &str, report: &MatchReport) -> Result<()> {
    crate::private_dir(&run_dir(dir, run))?;
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(&report_path(dir, run), &json)
}

/// A run's kept report, if it was linked.
pub(crate) fn load_report(dir: &Path, run: &str) -> Result<Option<MatchReport>> {
    let path = report_path(dir, run);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| file_err(&path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(&path, e)),
    }
}

/// This node's PSI key for a collaboration: `secrets/psi/<SHA-256 of the id>.key` (hex
/// of 64 uniform bytes, mode 0600, written atomically), made on first use. Kept on
/// disk so that a node that restarts mid-match blinds with the same key and the keys
/// already computed with it still join; never logged, never in the catalog.
pub(crate) fn psi_key(node: &NodeDir, collaboration: &str) -> Result<Party> {
    let secrets = node
        .dir()
        .join(&node.config().signing_key)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| node.dir().join("secrets"));
    let digest = Sha256::digest(collaboration.as_bytes());
    let path = secrets
        .join("psi")
        .join(format!("{}.key", crate::hex(&digest[..16])));
    let wide: Zeroizing<[u8; 64]> = if path.exists() {
        let text = crate::read_secret(&path)?;
        let text = std::str::from_utf8(&text).map_err(|_| file_err(&path, "not a hex key"))?;
        Zeroizing::new(
            crate::decode_hex::<64>(text)
                .ok_or_else(|| file_err(&path, "not a 64-byte hex key"))?,
        )
    } else {
        let mut wide = Zeroizing::new([0u8; 64]);
        rand::rngs::OsRng
            .try_fill_bytes(wide.as_mut())
            .map_err(|e| Error::Internal(format!("the operating system's RNG failed: {e}")))?;
        crate::private_dir(&secrets.join("psi"))?;
        write_atomic(&path, Zeroizing::new(crate::hex(wide.as_ref())).as_bytes())?;
        wide
    };
    Ok(Party::new(SecretKey::from_uniform_bytes(&wide)))
}

/// The header of a contribution on the wire; the keys follow as raw bytes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    party: usize,
    records: u32,
    tallies: Vec<ColumnTally>,
    channels: Vec<(String, u64)>,
    /// Per channel, the points the member handed the host to re-blind last and keep
    /// (`…/keep/{attempt}`): their join keys are at the host already.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kept: Vec<(String, u64)>,
    /// The member's attempt at this contribution, naming the batches it handed the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<String>,
    /// The tables the member shared for the joined view, sent before this.
    #[serde(default)]
    tables: Vec<SentTable>,
}

/// A contribution as the host receives it.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) part: PartyContribution,
    pub(crate) tables: Vec<SentTable>,
    /// The attempt whose kept batches belong to it (when it announces any).
    pub(crate) attempt: Option<String>,
}

/// Most join keys one contribution may hold, kept at the host or sent (about 1.3 GB in
/// memory while the host links).
pub(crate) const MAX_KEYS: u64 = 1 << 26;

/// Encodes a contribution: a big-endian `u32` header length, the JSON header (with the
/// tables shared for the joined view, and the points handed to the host to keep), then
/// per channel its rows, ascending, as LEB128 differences (about a byte each), and then
/// its 16-byte join keys in the same order.
pub(crate) fn encode_contribution(
    c: &PartyContribution,
    tables: &[SentTable],
    attempt: Option<&str>,
) -> Result<Vec<u8>> {
    let header = Header {
        tables: tables.to_vec(),
        party: c.party,
        records: c.records,
        tallies: c.tallies.clone(),
        channels: c
            .keys
            .iter()
            .map(|(n, k)| (n.clone(), k.len() as u64))
            .collect(),
        kept: c.kept.clone(),
        attempt: attempt.map(str::to_string),
    };
    let json = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
    let keys: usize = c.keys.iter().map(|(_, k)| k.len()).sum();
    let mut out = Vec::with_capacity(4 + json.len() + keys * 17);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    for (_, k) in &c.keys {
        let mut k = std::borrow::Cow::Borrowed(k);
        if !k.is_sorted() {
            k.to_mut().sort_unstable();
        }
        let rows: Vec<u32> = k.iter().map(|(r, _)| *r).collect();
        jingteng_psi::encode_rows(0, &rows, &mut out)
            .map_err(|e| Error::Internal(e.to_string()))?;
        for (_, key) in k.iter() {
            out.extend_from_slice(key);
        }
    }
    Ok(out)
}

/// Decodes a contribution; sizes must agree exactly with the header.
pub(crate) fn decode_contribution(bytes: &[u8]) -> Result<PartyContribution, String> {
    decode_received(bytes).map(|r| r.part)
}

/// [`decode_contribution`], with the tables the member says it shared and its attempt.
pub(crate) fn decode_received(bytes: &[u8]) -> Result<Received, String> {
    let len_bytes: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated header length")?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let json = bytes
        .get(4..4usize.saturating_add(len))
        .ok_or("truncated header")?;
    let header: Header = serde_json::from_slice(json).map_err(|e| format!("bad header: {e}"))?;
    let kept_total = header
        .kept
        .iter()
        .try_fold(0u64, |a, (_, n)| a.checked_add(*n))
        .filter(|n| *n <= MAX_KEYS)
        .ok_or("more keys kept at the host than a contribution may hold")?;
    if !header.kept.is_empty() && header.attempt.as_deref().is_none_or(|a| !valid_run_id(a)) {
        return Err("keys kept at the host, but no attempt that names them".into());
    }
    let mut rest = &bytes[4 + len..];
    let mut keys = Vec::with_capacity(header.channels.len().min(64));
    let mut total = kept_total;
    for (name, count) in header.channels {
        total = total
            .checked_add(count)
            .filter(|n| *n <= MAX_KEYS)
            .ok_or("more keys than a contribution may hold")?;
        let n = usize::try_from(count).map_err(|_| "count too large")?;
        // Each key takes 16 bytes and its row at least one: refuse before allocating.
        if rest.len() < n.saturating_mul(17) {
            return Err(format!("channel {name}: fewer keys than announced"));
        }
        let (rows, used) = jingteng_psi::decode_rows(rest, 0, n)
            .map_err(|e| format!("channel {name}: rows: {e}"))?;
        let body = rest
            .get(used..used + n * 16)
            .ok_or_else(|| format!("channel {name}: fewer keys than announced"))?;
        let list: Keyed = rows
            .into_iter()
            .zip(body.chunks_exact(16))
            .map(|(row, c)| {
                let mut key = [0u8; 16];
                key.copy_from_slice(c);
                (row, key)
            })
            .collect();
        keys.push((name, list));
        rest = &rest[used + n * 16..];
    }
    if !rest.is_empty() {
        return Err("bytes after the last channel".into());
    }
    Ok(Received {
        part: PartyContribution {
            party: header.party,
            records: header.records,
            tallies: header.tallies,
            keys,
            kept: header.kept,
        },
        tables: header.tables,
        attempt: header.attempt,
    })
}

/// Where the host keeps the join keys of the batches a member handed it in one attempt:
/// `runs/RUN/party-N/keys-ATTEMPT/`.
fn kept_dir(dir: &Path, run: &str, party: usize, attempt: &str) -> PathBuf {
    run_dir(dir, run)
        .join(format!("party-{party}"))
        .join(format!("keys-{attempt}"))
}

/// Keeps the join keys the host computed for one batch a member handed it (channel
/// `channel`, the match's channel index; batch `start`), atomically: a batch handed
/// again replaces itself. Format: `(row: u32 BE, key: 16 bytes)` pairs.
pub(crate) fn store_kept(
    dir: &Path,
    run: &str,
    party: usize,
    attempt: &str,
    channel: usize,
    start: u32,
    keys: &[(u32, [u8; 16])],
) -> Result<()> {
    let folder = kept_dir(dir, run, party, attempt);
    crate::private_dir(&folder)?;
    let mut bytes = Vec::with_capacity(keys.len() * 20);
    for (row, key) in keys {
        bytes.extend_from_slice(&row.to_be_bytes());
        bytes.extend_from_slice(key);
    }
    write_atomic(
        &folder.join(format!("c{channel:03}-{start:010}.keys")),
        &bytes,
    )
}

/// The join keys the host kept for a member's attempt, per channel (named from
/// `channels`, the match's channel names in order). Anything else in the folder is an
/// error naming the file.
pub(crate) fn load_kept(
    dir: &Path,
    run: &str,
    party: usize,
    attempt: &str,
    channels: &[String],
) -> Result<Vec<(String, Keyed)>> {
    let folder = kept_dir(dir, run, party, attempt);
    let mut out: Vec<(String, Keyed)> = channels.iter().map(|c| (c.clone(), Vec::new())).collect();
    let entries = match std::fs::read_dir(&folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(file_err(&folder, e)),
    };
    let mut total = 0u64;
    for entry in entries {
        let entry = entry.map_err(|e| file_err(&folder, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue; // an atomic write that did not finish
        }
        let channel = name
            .strip_prefix('c')
            .and_then(|n| n.split_once('-'))
            .and_then(|(c, _)| c.parse::<usize>().ok())
            .filter(|c| *c < channels.len())
            .ok_or_else(|| file_err(&path, "not a batch of kept keys"))?;
        let size = entry.metadata().map_err(|e| file_err(&path, e))?.len();
        total += size / 20;
        if size % 20 != 0 || total > MAX_KEYS {
            return Err(file_err(&path, "not a whole number of keys, or too many"));
        }
        let bytes = std::fs::read(&path).map_err(|e| file_err(&path, e))?;
        out[channel].1.extend(bytes.chunks_exact(20).map(|c| {
            let mut key = [0u8; 16];
            key.copy_from_slice(&c[4..]);
            (u32::from_be_bytes([c[0], c[1], c[2], c[3]]), key)
        }));
    }
    out.retain(|(_, k)| !k.is_empty());
    Ok(out)
}

/// Removes every attempt's kept keys of a member for a run.
pub(crate) fn discard_kept(dir: &Path, run: &str, party: usize) {
    let folder = run_dir(dir, run).join(format!("party-{party}"));
    if let Ok(entries) = std::fs::read_dir(&folder) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("keys-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The other members, reached through their APIs from a blocking thread; every call
/// retried under the node's policy.
pub(crate) struct RemotePeers<'a> {
    pub(crate) node: &'a NodeDir,
    pub(crate) collaboration: &'a str,
    pub(crate) members: &'a [MemberCard],
    /// The host (spec index), which re-blinds last and keeps the join keys, with the
    /// run and this member's attempt at it; `None` when this node is the host.
    pub(crate) keeper: Option<(usize, &'a str, &'a str)>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) retry: RetryPolicy,
    pub(crate) halt: &'a Halt,
    /// Members this side gave up on.
    pub(crate) gave_up: std::sync::Mutex<Vec<String>>,
    /// The first failure of a member, as this node saw it (the match pipeline's own
    /// error type would call it a bug).
    pub(crate) failure: std::sync::Mutex<Option<Error>>,
}

impl RemotePeers<'_> {
    fn failed(&self, e: Error) -> jingteng_match::Error {
        let message = e.to_string();
        if let Error::PeerGaveUp { party, .. } = &e {
            lock(&self.gave_up).push(party.clone());
        }
        lock(&self.failure).get_or_insert(e);
        jingteng_match::Error::Internal(message)
    }
}

impl Peers for RemotePeers<'_> {
    fn reblind(
        &self,
        party: usize,
        _channel: &str,
        batch: &BlindedBatch,
    ) -> jingteng_match::Result<BlindedBatch> {
        let m = self
            .members
            .get(party)
            .ok_or_else(|| jingteng_match::Error::Internal(format!("no member {party}")))?;
        let path = format!("/v1/collaborations/{}/psi/reblind", self.collaboration);
        let call = Call {
            method: hyper::Method::POST,
            path: &path,
            body: Some((crate::PSI_BATCH_TYPE, batch.encode().into())),
        };
        let (status, body) = self
            .runtime
            .block_on(crate::retry::call_peer(
                self.node,
                m,
                &call,
                self.retry,
                self.halt,
                &|_| {},
            ))
            .map_err(|e| self.failed(e))?;
        if status != 200 {
            return Err(self.failed(Error::Peer {
                addr: m.endpoint.clone(),
                message: format!(
                    "{} refused to re-blind ({status}): {}",
                    m.party,
                    crate::retry::problem_detail(&body)
                ),
            }));
        }
        let out = BlindedBatch::decode(&body).map_err(|e| {
            self.failed(Error::Peer {
                addr: m.endpoint.clone(),
                message: format!("{} answered a malformed batch: {e}", m.party),
            })
        })?;
        if out.len() != batch.len() {
            return Err(self.failed(Error::Peer {
                addr: m.endpoint.clone(),
                message: format!(
                    "{} returned {} points for {}",
                    m.party,
                    out.len(),
                    batch.len()
                ),
            }));
        }
        Ok(out)
    }

    fn keeper(&self) -> Option<usize> {
        self.keeper.map(|(k, _, _)| k)
    }

    fn keep(&self, keeper: usize, batch: &KeepBatch) -> jingteng_match::Result<()> {
        let (Some((host, run, attempt)), Some(m)) = (self.keeper, self.members.get(keeper)) else {
            return Err(jingteng_match::Error::Internal(format!(
                "party {keeper} does not keep join keys"
            )));
        };
        if host != keeper {
            return Err(jingteng_match::Error::Internal(format!(
                "party {keeper} is not the host"
            )));
        }
        let path = format!(
            "/v1/collaborations/{}/match/{run}/keep/{attempt}",
            self.collaboration
        );
        let body = batch.encode()?;
        let call = Call {
            method: hyper::Method::POST,
            path: &path,
            body: Some((crate::PSI_KEEP_TYPE, body.into())),
        };
        let (status, body) = self
            .runtime
            .block_on(crate::retry::call_peer(
                self.node,
                m,
                &call,
                self.retry,
                self.halt,
                &|_| {},
            ))
            .map_err(|e| self.failed(e))?;
        if status != 202 {
            return Err(self.failed(Error::Peer {
                addr: m.endpoint.clone(),
                message: format!(
                    "the host {} refused to keep a batch ({status}): {}",
                    m.party,
                    crate::retry::problem_detail(&body)
                ),
            }));
        }
        Ok(())
    }
}

/// This member's side: its imported identity table (`identity`) through the PSI with `me`.
pub(crate) fn contribute_here(
    node: &NodeDir,
    collab: &Collaboration,
    me: &Party,
    peers: &RemotePeers<'_>,
    identity: PathBuf,
) -> Result<PartyContribution> {
    let party = collab
        .parties()
        .iter()
        .position(|p| p.name == node.config().party)
        .ok_or_else(|| Error::Contract("this node is not a party of the spec".into()))?;
    jingteng_match::contribute(
        collab,
        party,
        Source::File(identity),
        me,
        peers,
        &|_: &str, _: u64| {},
    )
    .map_err(|e| match lock(&peers.failure).take() {
        Some(peer) => peer,
        None => Error::Contract(format!("contributing to the match: {e}")),
    })
}

/// Shared by the server: runs by id. A plain mutex, never held across an await.
pub(crate) type Runs = Arc<std::sync::Mutex<BTreeMap<String, Run>>>;

/// Locks the runs; a panic elsewhere while holding the lock does not lose them.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contributions_round_trip_and_garbage_is_refused() {
        let c = PartyContribution {
            party: 1,
            records: 300,
            tallies: vec![ColumnTally::default()],
            keys: vec![(
                "phone/md5".into(),
                vec![(0, [1; 16]), (2, [2; 16]), (2, [3; 16]), (299, [4; 16])],
            )],
            kept: vec![("email/md5".into(), 7)],
        };
        let tables = vec![SentTable {
            table: "users".into(),
            parts: 2,
            rows: 3,
            orphans: 0,
            excluded: 1,
            expired: 0,
        }];
        let attempt = "0123456789abcdef";
        let bytes = encode_contribution(&c, &tables, Some(attempt)).unwrap();
        let r = decode_received(&bytes).unwrap();
        assert_eq!(r.tables, tables);
        assert_eq!(r.attempt.as_deref(), Some(attempt));
        let back = r.part;
        assert_eq!(
            (
                back.party,
                back.records,
                back.keys.clone(),
                back.kept.clone()
            ),
            (1, 300, c.keys.clone(), c.kept.clone())
        );
        // Rows as one-byte differences but the last (297: two bytes), then the keys.
        let header = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(bytes.len(), 4 + header + 5 + 4 * 16);
        for cut in 0..bytes.len() {
            assert!(decode_contribution(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_contribution(&[bytes.as_slice(), &[0]].concat()).is_err());
        assert!(decode_contribution(b"\xff\xff\xff\xff").is_err());
        assert!(decode_contribution(b"").is_err());
        // Kept keys need the attempt that names them.
        let no_attempt = encode_contribution(&c, &tables, None).unwrap();
        assert!(decode_contribution(&no_attempt).is_err());
        // A header announcing more keys than a contribution may hold is refused before
        // anything is allocated.
        let huge = PartyContribution {
            kept: vec![("email/md5".into(), MAX_KEYS + 1)],
            ..c.clone()
        };
        let bytes = encode_contribution(&huge, &tables, Some(attempt)).unwrap();
        assert!(decode_contribution(&bytes).is_err());
    }

    #[test]
    fn kept_keys_are_stored_per_batch_and_loaded_per_channel() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, run, attempt) = (tmp.path(), "00000000000000aa", "00000000000000bb");
        let channels = vec!["phone/md5".to_string(), "email/md5".to_string()];
        store_kept(dir, run, 1, attempt, 1, 0, &[(0, [1; 16]), (3, [2; 16])]).unwrap();
        store_kept(dir, run, 1, attempt, 1, 8192, &[(8192, [3; 16])]).unwrap();
        // Handed again: replaces itself.
        store_kept(dir, run, 1, attempt, 1, 0, &[(0, [1; 16]), (3, [2; 16])]).unwrap();
        let kept = load_kept(dir, run, 1, attempt, &channels).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, "email/md5");
        let mut keys = kept[0].1.clone();
        keys.sort_unstable();
        assert_eq!(keys, vec![(0, [1; 16]), (3, [2; 16]), (8192, [3; 16])]);
        assert!(
            load_kept(dir, run, 1, "00000000000000cc", &channels)
                .unwrap()
                .is_empty()
        );
        std::fs::write(kept_dir(dir, run, 1, attempt).join("junk"), b"x").unwrap();
        assert!(load_kept(dir, run, 1, attempt, &channels).is_err());
        discard_kept(dir, run, 1);
        assert!(!kept_dir(dir, run, 1, attempt).exists());
    }
}

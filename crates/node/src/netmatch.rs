//! The networked match: the host asks every member to contribute; each member runs its
//! side of the PSI over its imported identity table, having every other member re-blind
//! its batches through their APIs, and sends its join keys and column tallies to the
//! host; the host links them and every member may fetch the report — and nothing more.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jingteng_match::{ColumnTally, Keyed, MatchReport, PartyContribution, Peers, Source};
use jingteng_psi::{BlindedBatch, Collaboration, Party, SecretKey};
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
                Ok(bytes) => decode_with_tables(&bytes)
                    .map(|(_, t)| t)
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
    /// The tables the member shared for the joined view, sent before this.
    #[serde(default)]
    tables: Vec<SentTable>,
}

/// Encodes a contribution: a big-endian `u32` header length, the JSON header (with the
/// tables shared for the joined view), then per channel its `(row: u32 BE, key: 16
/// bytes)` pairs.
pub(crate) fn encode_contribution(c: &PartyContribution, tables: &[SentTable]) -> Result<Vec<u8>> {
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
    };
    let json = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
    let keys: usize = c.keys.iter().map(|(_, k)| k.len()).sum();
    let mut out = Vec::with_capacity(4 + json.len() + keys * 20);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    for (_, k) in &c.keys {
        for (row, key) in k {
            out.extend_from_slice(&row.to_be_bytes());
            out.extend_from_slice(key);
        }
    }
    Ok(out)
}

/// Decodes a contribution; sizes must agree exactly with the header.
pub(crate) fn decode_contribution(bytes: &[u8]) -> Result<PartyContribution, String> {
    decode_with_tables(bytes).map(|(c, _)| c)
}

/// [`decode_contribution`], with the tables the member says it shared.
pub(crate) fn decode_with_tables(
    bytes: &[u8],
) -> Result<(PartyContribution, Vec<SentTable>), String> {
    let len_bytes: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("truncated header length")?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let json = bytes.get(4..4 + len).ok_or("truncated header")?;
    let header: Header = serde_json::from_slice(json).map_err(|e| format!("bad header: {e}"))?;
    let mut rest = &bytes[4 + len..];
    let mut keys = Vec::with_capacity(header.channels.len());
    for (name, count) in header.channels {
        let n = usize::try_from(count).map_err(|_| "count too large")?;
        let size = n.checked_mul(20).ok_or("count too large")?;
        let body = rest
            .get(..size)
            .ok_or_else(|| format!("channel {name}: fewer keys than announced"))?;
        let list: Keyed = body
            .chunks_exact(20)
            .map(|c| {
                let mut row = [0u8; 4];
                row.copy_from_slice(&c[..4]);
                let mut key = [0u8; 16];
                key.copy_from_slice(&c[4..]);
                (u32::from_be_bytes(row), key)
            })
            .collect();
        keys.push((name, list));
        rest = &rest[size..];
    }
    if !rest.is_empty() {
        return Err("bytes after the last channel".into());
    }
    Ok((
        PartyContribution {
            party: header.party,
            records: header.records,
            tallies: header.tallies,
            keys,
        },
        header.tables,
    ))
}

/// The other members, reached through their APIs from a blocking thread; every call
/// retried under the node's policy.
pub(crate) struct RemotePeers<'a> {
    pub(crate) node: &'a NodeDir,
    pub(crate) collaboration: &'a str,
    pub(crate) members: &'a [MemberCard],
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
            records: 3,
            tallies: vec![ColumnTally::default()],
            keys: vec![("phone/md5".into(), vec![(0, [1; 16]), (2, [2; 16])])],
        };
        let tables = vec![SentTable {
            table: "users".into(),
            parts: 2,
            rows: 3,
            orphans: 0,
        }];
        let bytes = encode_contribution(&c, &tables).unwrap();
        assert_eq!(decode_with_tables(&bytes).unwrap().1, tables);
        let back = decode_contribution(&bytes).unwrap();
        assert_eq!(
            (back.party, back.records, back.keys.clone()),
            (1, 3, c.keys.clone())
        );
        assert!(decode_contribution(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_contribution(&[bytes.as_slice(), &[0]].concat()).is_err());
        assert!(decode_contribution(b"\xff\xff\xff\xff").is_err());
        assert!(decode_contribution(b"").is_err());
    }
}

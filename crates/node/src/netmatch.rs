//! The networked match: the host asks every member to contribute; each member runs its
//! side of the PSI over its imported identity table, having every other member re-blind
//! its batches through their APIs, and sends its join keys and column tallies to the
//! host; the host links them and every member may fetch the report — and nothing more.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use jingteng_match::{ColumnTally, Keyed, MatchReport, PartyContribution, Peers, Source};
use jingteng_psi::{BlindedBatch, Collaboration, Party};
use serde::{Deserialize, Serialize};

use crate::contract::MemberCard;
use crate::{Error, NodeDir, Result};

/// A match run at the host.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub(crate) collaboration: String,
    pub(crate) parts: BTreeMap<usize, PartyContribution>,
    pub(crate) report: Option<MatchReport>,
    pub(crate) error: Option<String>,
    pub(crate) started: Option<Instant>,
    /// The run's job in the host's catalog.
    pub(crate) job: Option<i64>,
}

/// What a GET of a run answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStatus {
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Parties whose contribution arrived.
    pub received: Vec<String>,
    /// The report, once done.
    pub report: Option<serde_json::Value>,
    /// What went wrong, if it failed.
    pub error: Option<String>,
}

impl Run {
    /// Marks the run failed (the first reason stands) and closes its job.
    pub(crate) fn fail(&mut self, dir: &std::path::Path, error: String) {
        let error = self.error.get_or_insert(error).clone();
        self.close_job(dir, Some(&error));
    }

    /// Moves the run's job to `done` (no error) or `failed`, once.
    pub(crate) fn close_job(&mut self, dir: &std::path::Path, error: Option<&str>) {
        if let (Some(job), Ok(node)) = (self.job.take(), NodeDir::open(dir))
            && let Ok(mut catalog) = node.catalog()
        {
            let _ = catalog.finish_job(job, error);
        }
    }

    pub(crate) fn status(&self, names: &[String]) -> RunStatus {
        RunStatus {
            state: if self.error.is_some() {
                "failed"
            } else if self.report.is_some() {
                "done"
            } else {
                "running"
            }
            .into(),
            received: self
                .parts
                .keys()
                .filter_map(|p| names.get(*p).cloned())
                .collect(),
            report: self
                .report
                .as_ref()
                .and_then(|r| serde_json::to_value(r).ok()),
            error: self.error.clone(),
        }
    }
}

/// The header of a contribution on the wire; the keys follow as raw bytes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    party: usize,
    records: u32,
    tallies: Vec<ColumnTally>,
    channels: Vec<(String, u64)>,
}

/// Encodes a contribution: a big-endian `u32` header length, the JSON header, then per
/// channel its `(row: u32 BE, key: 16 bytes)` pairs.
pub(crate) fn encode_contribution(c: &PartyContribution) -> Result<Vec<u8>> {
    let header = Header {
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
    Ok(PartyContribution {
        party: header.party,
        records: header.records,
        tallies: header.tallies,
        keys,
    })
}

/// The other members, reached through their APIs from a blocking thread.
pub(crate) struct RemotePeers<'a> {
    pub(crate) node: &'a NodeDir,
    pub(crate) collaboration: &'a str,
    pub(crate) members: &'a [MemberCard],
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Peers for RemotePeers<'_> {
    fn reblind(
        &self,
        party: usize,
        _channel: &str,
        batch: &BlindedBatch,
    ) -> jingteng_match::Result<BlindedBatch> {
        let peer_err = |m: String| jingteng_match::Error::Internal(m);
        let m = self
            .members
            .get(party)
            .ok_or_else(|| peer_err(format!("no member {party}")))?;
        let path = format!("/v1/collaborations/{}/psi/reblind", self.collaboration);
        let (status, body) = self
            .runtime
            .block_on(crate::post_to_peer(
                self.node,
                &m.endpoint,
                &m.cert_sha256,
                &path,
                crate::PSI_BATCH_TYPE,
                batch.encode(),
            ))
            .map_err(|e| peer_err(e.to_string()))?;
        if status != 200 {
            return Err(peer_err(format!(
                "{} refused to re-blind ({status}): {}",
                m.party,
                String::from_utf8_lossy(&body)
            )));
        }
        let out = BlindedBatch::decode(&body)?;
        if out.len() != batch.len() {
            return Err(peer_err(format!(
                "{} returned {} points for {}",
                m.party,
                out.len(),
                batch.len()
            )));
        }
        Ok(out)
    }
}

/// This member's side: its latest imported identity table through the PSI with `me`.
pub(crate) fn contribute_here(
    node: &NodeDir,
    collab: &Collaboration,
    members: &[MemberCard],
    me: &Party,
    runtime: tokio::runtime::Handle,
) -> Result<PartyContribution> {
    let party = collab
        .parties()
        .iter()
        .position(|p| p.name == node.config().party)
        .ok_or_else(|| Error::Contract("this node is not a party of the spec".into()))?;
    let dataset = format!(
        "{}/{}",
        node.config().party,
        collab.parties()[party].identity.name
    );
    let version = node
        .catalog()?
        .datasets()?
        .into_iter()
        .find(|d| d.name == dataset)
        .ok_or_else(|| {
            Error::Contract(format!(
                "no imported {dataset}: run `jingteng import --table {}` first",
                collab.parties()[party].identity.name
            ))
        })?;
    let peers = RemotePeers {
        node,
        collaboration: collab.id(),
        members,
        runtime,
    };
    jingteng_match::contribute(
        collab,
        party,
        Source::File(node.dir().join(&version.path)),
        me,
        &peers,
        &|_: &str, _: u64| {},
    )
    .map_err(|e| Error::Contract(format!("contributing to the match: {e}")))
}

/// Shared by the server: runs by id.
pub(crate) type Runs = Arc<tokio::sync::Mutex<BTreeMap<String, Run>>>;

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
        let bytes = encode_contribution(&c).unwrap();
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

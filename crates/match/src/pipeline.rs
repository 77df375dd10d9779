//! The matching pipeline: plan the channels, stream every party's identity table
//! through normalisation and the PSI exchange, link, report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow::array::{Array, StringArray};
use jingteng_psi::{
    BlindedBatch, Channel, Collaboration, Contribution, DeviceKinds, DeviceType, DigestBytes,
    DigestKind, Form, IdType, KeepBatch, Linked, Normalized, Party, Reject, SecretKey, link,
};
use rand::{SeedableRng, TryRngCore};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::read::{self, ColumnReader};
use crate::report::{self, ColumnTally};
use crate::{Error, Result};

/// Progress of a run, reported as batches of a party's rows are done.
pub trait Progress: Sync {
    /// `rows` more rows of `party` have been matched.
    fn rows_done(&self, party: &str, rows: u64);
}

impl<F: Fn(&str, u64) + Sync> Progress for F {
    fn rows_done(&self, party: &str, rows: u64) {
        self(party, rows)
    }
}

/// Where a party's identity table comes from.
pub enum Source {
    /// A CSV or Parquet file.
    File(PathBuf),
    /// Batches made on the fly (benchmarks): one `StringArray` per column the plan
    /// requests (identifier columns in spec order, then device-type columns).
    Batches(Box<dyn Iterator<Item = Vec<StringArray>> + Send>),
}

/// How one identifier column is read and which channels it feeds.
#[derive(Debug)]
struct IdentPlan {
    column: String,
    family: IdType,
    form: Form,
    /// Position of this column among the requested columns.
    pos: usize,
    devices: Option<DeviceSource>,
}

#[derive(Debug, Clone, Copy)]
enum DeviceSource {
    Fixed(DeviceType),
    /// Position of the device-type column among the requested columns.
    Column(usize),
}

/// One PSI channel: an exact identifier type compared through one digest.
#[derive(Debug)]
pub(crate) struct ChannelPlan {
    pub(crate) channel: Channel,
    pub(crate) id_type: IdType,
    pub(crate) digest: DigestKind,
    /// Parties taking part, in spec order.
    pub(crate) participants: Vec<usize>,
}

const DEVICE_TYPES: [DeviceType; 5] = [
    DeviceType::Imei,
    DeviceType::Oaid,
    DeviceType::Idfa,
    DeviceType::Caid,
    DeviceType::Mac,
];

fn exact_types(family: IdType) -> Vec<IdType> {
    match family {
        IdType::Device(_) => DEVICE_TYPES.iter().map(|d| IdType::Device(*d)).collect(),
        other => vec![other],
    }
}

/// What to read from one party's identity table.
struct PartyPlan {
    /// Requested columns: identifier columns in spec order, then device-type columns.
    columns: Vec<String>,
    idents: Vec<IdentPlan>,
}

/// `(row, join key)` pairs of one party on one channel.
pub type Keyed = Vec<(u32, [u8; 16])>;

fn plan(collab: &Collaboration) -> (Vec<PartyPlan>, Vec<ChannelPlan>) {
    let parties: Vec<PartyPlan> = collab
        .parties()
        .iter()
        .map(|p| {
            let ids = &p.identity.identifiers;
            let mut columns: Vec<String> = ids.iter().map(|i| i.column.clone()).collect();
            let idents = ids
                .iter()
                .enumerate()
                .map(|(pos, i)| IdentPlan {
                    column: i.column.clone(),
                    family: i.id_type,
                    form: i.form,
                    pos,
                    devices: i.devices.as_ref().map(|d| match d {
                        DeviceKinds::Fixed(t) => DeviceSource::Fixed(*t),
                        DeviceKinds::Column(c) => {
                            let at = columns.iter().position(|x| x == c).unwrap_or_else(|| {
                                columns.push(c.clone());
                                columns.len() - 1
                            });
                            DeviceSource::Column(at)
                        }
                    }),
                })
                .collect();
            PartyPlan { columns, idents }
        })
        .collect();

    let mut families: Vec<IdType> = parties
        .iter()
        .flat_map(|p| p.idents.iter().map(|i| i.family))
        .collect();
    families.sort_by_key(|f| f.priority());
    families.dedup_by_key(|f| f.family());
    let mut channels = Vec::new();
    for family in families {
        for digest in collab.digests_for(family) {
            for exact in exact_types(family) {
                let participants: Vec<usize> = parties
                    .iter()
                    .enumerate()
                    .filter(|(_, plan)| {
                        plan.idents.iter().any(|i| {
                            i.family.family() == family.family()
                                && can_produce(i.form, digest)
                                && match (i.devices, exact) {
                                    (Some(DeviceSource::Fixed(t)), IdType::Device(e)) => t == e,
                                    _ => true,
                                }
                        })
                    })
                    .map(|(p, _)| p)
                    .collect();
                if participants.len() >= 2 {
                    let name = format!("{}/{}", exact.name(), digest.as_str());
                    channels.push(ChannelPlan {
                        channel: Channel::new(collab.id(), &name),
                        id_type: exact,
                        digest,
                        participants,
                    });
                }
            }
        }
    }
    (parties, channels)
}

fn can_produce(form: Form, digest: DigestKind) -> bool {
    matches!(
        (form, digest),
        (Form::Raw, _) | (Form::Md5, DigestKind::Md5) | (Form::Sha256, DigestKind::Sha256)
    )
}

/// A ChaCha20 generator seeded from the operating system.
pub fn secure_rng() -> Result<ChaCha20Rng> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| Error::Internal(format!("the operating system's RNG failed: {e}")))?;
    Ok(ChaCha20Rng::from_seed(seed))
}

/// What one batch of a party's rows produced.
struct BatchOut {
    rows: usize,
    tallies: Vec<ColumnTally>,
    /// Per channel index: (row, join key).
    keys: Vec<(usize, Keyed)>,
    /// Per channel index: points handed to the keeper.
    kept: Vec<(usize, u64)>,
}

/// The other parties, as one party's owner loop reaches them: re-blinding its batches.
pub trait Peers: Sync {
    /// Has party `party` (spec index) multiply every point of `batch` by its key for the
    /// collaboration, on channel `channel`, keeping the order.
    fn reblind(&self, party: usize, channel: &str, batch: &BlindedBatch) -> Result<BlindedBatch>;

    /// The party (spec index) that re-blinds last on every channel it takes part in and
    /// keeps the join keys itself, instead of returning the points to their owner and
    /// receiving the join keys back (networked mode: the host). `None` (local mode):
    /// every batch returns to its owner, which computes its join keys.
    fn keeper(&self) -> Option<usize> {
        None
    }

    /// Hands the keeper a batch of the owner's points re-blinded by every other
    /// participant of the channel, in row order with their rows; nothing comes back.
    fn keep(&self, keeper: usize, batch: &KeepBatch) -> Result<()> {
        Err(Error::Internal(format!(
            "no keeper: party {keeper} cannot keep {} points of {}",
            batch.rows.len(),
            batch.channel
        )))
    }
}

/// Every party in this process (local mode); batches still pass through the wire format.
struct LocalPeers<'a>(&'a [Party]);

impl Peers for LocalPeers<'_> {
    fn reblind(&self, party: usize, _channel: &str, batch: &BlindedBatch) -> Result<BlindedBatch> {
        let received = BlindedBatch::decode(&batch.encode())?;
        Ok(self.0[party].reblind(&received)?)
    }
}

struct Ctx<'a> {
    party: usize,
    idents: &'a [IdentPlan],
    channels: &'a [ChannelPlan],
    me: &'a Party,
    peers: &'a dyn Peers,
}

impl Ctx<'_> {
    fn process(&self, first_row: u32, columns: &[StringArray]) -> Result<BatchOut> {
        let rows = columns.first().map_or(0, |c| c.len());
        let mut tallies: Vec<ColumnTally> =
            self.idents.iter().map(|_| ColumnTally::default()).collect();
        let mut lists: Vec<(Vec<u32>, Vec<DigestBytes>)> = self
            .channels
            .iter()
            .map(|_| (Vec::new(), Vec::new()))
            .collect();
        for (j, ident) in self.idents.iter().enumerate() {
            let col = &columns[ident.pos];
            for row in 0..rows {
                let value = read::cell(col, row).unwrap_or("");
                let exact = match ident.devices {
                    None => Some(ident.family),
                    Some(DeviceSource::Fixed(t)) => Some(IdType::Device(t)),
                    Some(DeviceSource::Column(c)) => read::cell(&columns[c], row)
                        .and_then(DeviceType::parse)
                        .map(IdType::Device),
                };
                let norm = match exact {
                    Some(t) => jingteng_psi::normalize::normalize(t, ident.form, value),
                    None if value.trim().is_empty() => Normalized::Missing,
                    None => Normalized::Rejected(Reject::DeviceType),
                };
                tallies[j].add(&norm);
                let Some(exact) = exact else { continue };
                for (ci, ch) in self.channels.iter().enumerate() {
                    if ch.id_type == exact
                        && ch.participants.contains(&self.party)
                        && let Some(d) = norm.digest(ch.digest)
                    {
                        lists[ci].0.push(first_row + row as u32);
                        lists[ci].1.push(d);
                    }
                }
            }
        }
        let mut rng = secure_rng()?;
        let me = self.me;
        let mut keys = Vec::new();
        let mut kept = Vec::new();
        for (ci, (rows_of, digests)) in lists.into_iter().enumerate() {
            if digests.is_empty() {
                continue;
            }
            let ch = &self.channels[ci];
            // Rows ascending, each value once per row: the order the keeper receives rows
            // in, as one-byte differences.
            let mut pairs: Vec<(u32, DigestBytes)> = rows_of.into_iter().zip(digests).collect();
            pairs.sort_unstable();
            pairs.dedup();
            let (rows_of, digests): (Vec<u32>, Vec<DigestBytes>) = pairs.into_iter().unzip();
            // The keeper, when it takes part in the channel, re-blinds last and keeps.
            let keeper = self
                .peers
                .keeper()
                .filter(|k| *k != self.party && ch.participants.contains(k));
            let (pending, mut batch) = me.blind(&ch.channel, &digests, &mut rng)?;
            for &other in &ch.participants {
                if other != self.party && Some(other) != keeper {
                    batch = self.peers.reblind(other, ch.channel.name(), &batch)?;
                }
            }
            match keeper {
                Some(k) => {
                    let n = rows_of.len() as u64;
                    let handed = KeepBatch {
                        channel: ch.channel.name().to_string(),
                        start: first_row,
                        rows: rows_of,
                        points: pending.in_row_order(&batch)?,
                    };
                    self.peers.keep(k, &handed)?;
                    kept.push((ci, n));
                }
                None => {
                    let joined = me.finish(pending, &BlindedBatch::decode(&batch.encode())?)?;
                    keys.push((ci, rows_of.into_iter().zip(joined).collect()));
                }
            }
        }
        Ok(BatchOut {
            rows,
            tallies,
            keys,
            kept,
        })
    }
}

/// What one party contributes to a match: its record count, the tallies of its
/// identifier columns, and its join keys per channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartyContribution {
    /// The party's index in the spec.
    pub party: usize,
    /// Records (rows of its identity table).
    pub records: u32,
    /// Per identifier column, in spec order.
    pub tallies: Vec<ColumnTally>,
    /// Per channel that carried values: its name and `(row, join key)` pairs.
    pub keys: Vec<(String, Keyed)>,
    /// Per channel whose join keys the keeper computed and kept itself ([`Peers::keep`]):
    /// its name and how many the party handed it. The keeper merges them in
    /// ([`PartyContribution::merge_kept`]) before linking.
    #[serde(default)]
    pub kept: Vec<(String, u64)>,
}

impl PartyContribution {
    /// Merges the join keys the keeper kept for this party (per channel, from every batch
    /// it received) into its keys; the counts must be those the party announced, per
    /// channel, or the keeper missed (or was sent more than) a batch.
    pub fn merge_kept(&mut self, kept: Vec<(String, Keyed)>) -> Result<()> {
        let mut got: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for (c, k) in &kept {
            *got.entry(c.as_str()).or_default() += k.len() as u64;
        }
        got.retain(|_, n| *n > 0);
        let mut announced: std::collections::BTreeMap<&str, u64> =
            std::collections::BTreeMap::new();
        for (c, n) in &self.kept {
            *announced.entry(c.as_str()).or_default() += n;
        }
        announced.retain(|_, n| *n > 0);
        if got != announced {
            return Err(Error::Input {
                path: PathBuf::from(format!("party {}", self.party)),
                message: format!(
                    "the keys kept for it ({got:?}) are not those it announced ({announced:?})"
                ),
            });
        }
        for (channel, keys) in kept {
            match self.keys.iter_mut().find(|(c, _)| *c == channel) {
                Some((_, k)) => k.extend(keys),
                None => self.keys.push((channel, keys)),
            }
        }
        for (_, k) in &mut self.keys {
            k.sort_unstable();
            k.dedup();
        }
        self.kept.clear();
        Ok(())
    }
}

/// Every channel a collaboration matches through, in the order the match runs them: its
/// name (`phone/md5`, …) and the parties (spec indices) taking part.
pub fn channels(collab: &Collaboration) -> Vec<(String, Vec<usize>)> {
    plan(collab)
        .1
        .into_iter()
        .map(|c| (c.channel.name().to_string(), c.participants))
        .collect()
}

/// Runs one party's side of the match over its table: normalise, then for every batch
/// and channel blind with `me`, have every other participant re-blind through `peers`,
/// and keep the join keys.
pub fn contribute(
    collab: &Collaboration,
    party: usize,
    source: Source,
    me: &Party,
    peers: &dyn Peers,
    progress: &dyn Progress,
) -> Result<PartyContribution> {
    let (party_plans, channels) = plan(collab);
    let plan = party_plans
        .get(party)
        .ok_or_else(|| Error::Internal(format!("no party {party}")))?;
    let (columns, idents) = (&plan.columns, &plan.idents);
    let name = &collab.parties()[party].name;
    let ctx = Ctx {
        party,
        idents,
        channels: &channels,
        me,
        peers,
    };
    let mut party_tallies: Vec<ColumnTally> =
        idents.iter().map(|_| ColumnTally::default()).collect();
    let mut party_keys: Vec<Keyed> = channels.iter().map(|_| Vec::new()).collect();
    let mut party_kept: Vec<u64> = channels.iter().map(|_| 0).collect();
    let batches: Box<dyn Iterator<Item = Result<Vec<StringArray>>> + Send> = match source {
        Source::File(path) => {
            let mut reader = ColumnReader::open(&path, columns)?;
            Box::new(std::iter::from_fn(move || reader.next_batch().transpose()))
        }
        Source::Batches(b) => Box::new(b.map(Ok)),
    };
    // Batches are numbered as they are read (under par_bridge's lock, in order) and
    // processed by whichever worker is free, so reading overlaps the curve work.
    let path = &collab.parties()[party].identity.path;
    let mut next_row: u64 = 0;
    let numbered = batches.map(move |b| {
        let b = b?;
        let first = next_row;
        next_row += b.first().map_or(0, |c| c.len()) as u64;
        if next_row > u64::from(u32::MAX) {
            return Err(Error::Input {
                path: PathBuf::from(path),
                message: "more than 4,294,967,295 rows in one party's table".into(),
            });
        }
        Ok((first as u32, b))
    });
    let outs: Vec<BatchOut> = numbered
        .par_bridge()
        .map(|batch| {
            let (first, cols) = batch?;
            let out = ctx.process(first, &cols)?;
            progress.rows_done(name, out.rows as u64);
            Ok(out)
        })
        .collect::<Result<_>>()?;
    let mut rows: u64 = 0;
    for out in outs {
        rows += out.rows as u64;
        for (t, o) in party_tallies.iter_mut().zip(&out.tallies) {
            t.merge(o);
        }
        for (ci, keys) in out.keys {
            party_keys[ci].extend(keys);
        }
        for (ci, n) in out.kept {
            party_kept[ci] += n;
        }
    }
    let kept = party_kept
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(ci, n)| (channels[ci].channel.name().to_string(), *n))
        .collect();
    let keys = party_keys
        .into_iter()
        .enumerate()
        .filter(|(_, k)| !k.is_empty())
        .map(|(ci, mut k)| {
            // A party with two columns of one type may repeat a (row, key) pair.
            k.sort_unstable();
            k.dedup();
            (channels[ci].channel.name().to_string(), k)
        })
        .collect();
    Ok(PartyContribution {
        party,
        records: rows as u32,
        tallies: party_tallies,
        keys,
        kept,
    })
}

/// Links every party's contribution (one per party, in spec order) and builds the
/// report: what the host does.
pub fn link_and_report(
    collab: &Collaboration,
    parts: Vec<PartyContribution>,
    elapsed: Duration,
) -> Result<report::MatchReport> {
    Ok(link_parts(collab, parts, elapsed)?.0)
}

/// [`link_and_report`], also returning the linkage: which person each party's record
/// belongs to (what the host builds the joined view from).
pub fn link_parts(
    collab: &Collaboration,
    parts: Vec<PartyContribution>,
    elapsed: Duration,
) -> Result<(report::MatchReport, Linked)> {
    let (party_plans, channels) = plan(collab);
    if parts.len() != party_plans.len() || parts.iter().enumerate().any(|(i, p)| p.party != i) {
        return Err(Error::Internal(
            "one contribution per party, in spec order".into(),
        ));
    }
    let mut records = Vec::new();
    let mut tallies = Vec::new();
    let mut contributions: Vec<Contribution> = Vec::new();
    for part in parts {
        if part.tallies.len() != party_plans[part.party].idents.len() {
            return Err(Error::Internal(format!(
                "party {} sent tallies for {} columns, not {}",
                part.party,
                part.tallies.len(),
                party_plans[part.party].idents.len()
            )));
        }
        if !part.kept.is_empty() {
            return Err(Error::Internal(format!(
                "party {}'s keys kept by the keeper were not merged in",
                part.party
            )));
        }
        records.push(part.records);
        tallies.push(part.tallies);
        for (channel, keys) in part.keys {
            let ch = channels
                .iter()
                .find(|c| c.channel.name() == channel && c.participants.contains(&part.party))
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "party {} is not on channel {channel:?}",
                        part.party
                    ))
                })?;
            if let Some(&(row, _)) = keys.iter().find(|(r, _)| *r >= part.records) {
                return Err(Error::Internal(format!(
                    "party {} sent a key for row {row} of {}",
                    part.party, part.records
                )));
            }
            contributions.push(Contribution {
                party: part.party,
                id_type: ch.id_type,
                channel,
                keys,
            });
        }
    }
    // Channels listed in the report: those some party had values for.
    let used: Vec<&ChannelPlan> = channels
        .iter()
        .filter(|c| contributions.iter().any(|k| k.channel == c.channel.name()))
        .collect();
    let linked = link(&records, contributions);
    let report = report::build(
        collab,
        &party_plans
            .iter()
            .map(|plan| {
                plan.idents
                    .iter()
                    .map(|i| (i.column.clone(), i.family, i.form))
                    .collect()
            })
            .collect::<Vec<_>>(),
        tallies,
        &used,
        &linked,
        elapsed,
    );
    Ok((report, linked))
}

/// Runs the match over one source per party (in spec order), every party in this
/// process with its own fresh key.
pub fn match_sources(
    collab: &Collaboration,
    sources: Vec<Source>,
    progress: &dyn Progress,
) -> Result<report::MatchReport> {
    Ok(match_sources_linked(collab, sources, progress)?.0)
}

/// [`match_sources`], also returning the linkage.
pub fn match_sources_linked(
    collab: &Collaboration,
    sources: Vec<Source>,
    progress: &dyn Progress,
) -> Result<(report::MatchReport, Linked)> {
    let started = Instant::now();
    let n = collab.parties().len();
    if sources.len() != n {
        return Err(Error::Internal(format!(
            "{} sources for {n} parties",
            sources.len()
        )));
    }
    let parties: Vec<Party> = {
        let mut rng = secure_rng()?;
        (0..n)
            .map(|_| Party::new(SecretKey::random(&mut rng)))
            .collect()
    };
    let peers = LocalPeers(&parties);
    let parts = sources
        .into_iter()
        .enumerate()
        .map(|(p, source)| contribute(collab, p, source, &parties[p], &peers, progress))
        .collect::<Result<Vec<_>>>()?;
    drop(parties);
    link_parts(collab, parts, started.elapsed())
}

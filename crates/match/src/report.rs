//! The match report: what every party put in, what was rejected and why, and how many
//! people were matched for every set of parties, overall and per identifier type.

use std::collections::BTreeMap;
use std::time::Duration;

use jingteng_psi::{Collaboration, Form, IdType, Linked, Normalized, Reject};
use serde::Serialize;

use crate::pipeline::ChannelPlan;

/// Counts for one identifier column while it is read.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct ColumnTally {
    rows: u64,
    missing: u64,
    valid: u64,
    rejected: [u64; Reject::ALL.len()],
}

impl ColumnTally {
    pub(crate) fn add(&mut self, n: &Normalized) {
        self.rows += 1;
        match n {
            Normalized::Missing => self.missing += 1,
            Normalized::Rejected(r) => {
                if let Some(i) = Reject::ALL.iter().position(|x| x == r) {
                    self.rejected[i] += 1;
                }
            }
            _ => self.valid += 1,
        }
    }

    pub(crate) fn merge(&mut self, o: &ColumnTally) {
        self.rows += o.rows;
        self.missing += o.missing;
        self.valid += o.valid;
        for (a, b) in self.rejected.iter_mut().zip(o.rejected) {
            *a += b;
        }
    }
}

/// One identifier column in the report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ColumnReport {
    /// `phone`, `email`, `device` or `opaque`.
    #[serde(rename = "type")]
    pub id_type: String,
    /// `raw`, `md5` or `sha256`.
    pub form: String,
    /// Rows read.
    pub rows: u64,
    /// Empty cells.
    pub missing: u64,
    /// Cells with a valid identifier (ambiguous ones included).
    pub valid: u64,
    /// Cells rejected, all reasons together.
    pub invalid: u64,
    /// Rejected cells by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Valid cells whose value another record of the same party also holds; they link
    /// no one.
    pub ambiguous: u64,
}

/// People matched for one set of parties.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct OverlapReport {
    /// People with a linked record at every party of the set.
    pub matched: u64,
    /// The same, linking through one identifier type alone.
    pub by_id_type: BTreeMap<String, u64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MatchReport {
    /// The collaboration id.
    pub collaboration: String,
    /// Parties in spec order.
    pub parties: Vec<String>,
    /// Records (rows of the identity table) per party.
    pub records: BTreeMap<String, u64>,
    /// Per party, per identifier column.
    pub identifiers: BTreeMap<String, BTreeMap<String, ColumnReport>>,
    /// Per set of parties, keyed like `truth.json`: `"social+retail"`, parties in spec
    /// order joined by `+`.
    pub overlap: BTreeMap<String, OverlapReport>,
    /// Links refused because they would give a person two records of one party.
    pub conflicts: BTreeMap<String, u64>,
    /// The PSI channels that carried values: `phone/md5` with its parties, ….
    pub channels: BTreeMap<String, Vec<String>>,
    /// Wall time of the run.
    pub seconds: f64,
}

pub(crate) fn build(
    collab: &Collaboration,
    columns: &[Vec<(String, IdType, Form)>],
    tallies: Vec<Vec<ColumnTally>>,
    channels: &[&ChannelPlan],
    linked: &Linked,
    elapsed: Duration,
) -> MatchReport {
    let names: Vec<String> = collab.parties().iter().map(|p| p.name.clone()).collect();
    let mut identifiers = BTreeMap::new();
    for (p, (cols, tallies)) in columns.iter().zip(tallies).enumerate() {
        let mut per_column = BTreeMap::new();
        for ((column, family, form), t) in cols.iter().zip(tallies) {
            // A column feeds one channel per digest and exact type; its duplicates show
            // in every digest's channel, so per exact type take the largest count, and
            // add the exact types (device types) up.
            let mut per_type: BTreeMap<String, u64> = BTreeMap::new();
            for c in channels
                .iter()
                .filter(|c| c.id_type.family() == family.family())
            {
                if let Some(n) = linked.ambiguous.get(&(p, c.channel.name().to_string())) {
                    let e = per_type.entry(c.id_type.name()).or_default();
                    *e = (*e).max(*n);
                }
            }
            let ambiguous = per_type.values().sum();
            per_column.insert(
                column.clone(),
                ColumnReport {
                    id_type: family.family().to_string(),
                    form: form.as_str().to_string(),
                    rows: t.rows,
                    missing: t.missing,
                    valid: t.valid,
                    invalid: t.rejected.iter().sum(),
                    rejected: Reject::ALL
                        .iter()
                        .zip(t.rejected)
                        .filter(|(_, n)| *n > 0)
                        .map(|(r, n)| (r.as_str().to_string(), n))
                        .collect(),
                    ambiguous,
                },
            );
        }
        identifiers.insert(names[p].clone(), per_column);
    }

    let mut families: Vec<&'static str> = columns
        .iter()
        .flatten()
        .map(|(_, f, _)| f.family())
        .collect();
    families.sort_unstable();
    families.dedup();
    let n = names.len();
    let mut overlap = BTreeMap::new();
    // Every set of two or more parties while that is a readable number (up to 8 parties:
    // 247 sets); beyond, every pair and all parties together.
    let all = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    let masks: Vec<u64> = if n <= 8 {
        (1..=all).filter(|m| m.count_ones() >= 2).collect()
    } else {
        let mut m: Vec<u64> = (0..n)
            .flat_map(|a| (a + 1..n).map(move |b| (1u64 << a) | (1u64 << b)))
            .collect();
        m.push(all);
        m
    };
    for mask in masks {
        let key = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| names[i].as_str())
            .collect::<Vec<_>>()
            .join("+");
        let by_id_type = families
            .iter()
            .map(|f| {
                let count = linked
                    .by_family
                    .get(f)
                    .map_or(0, |c| Linked::count_covering(c, mask));
                (f.to_string(), count)
            })
            .collect();
        overlap.insert(
            key,
            OverlapReport {
                matched: Linked::count_covering(&linked.people_by_parties, mask),
                by_id_type,
            },
        );
    }

    MatchReport {
        collaboration: collab.id().to_string(),
        records: names
            .iter()
            .zip(&linked.records)
            .map(|(n, r)| (n.clone(), u64::from(*r)))
            .collect(),
        parties: names.clone(),
        identifiers,
        overlap,
        conflicts: linked
            .conflicts
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        channels: channels
            .iter()
            .map(|c| {
                (
                    c.channel.name().to_string(),
                    c.participants.iter().map(|p| names[*p].clone()).collect(),
                )
            })
            .collect(),
        seconds: elapsed.as_secs_f64(),
    }
}

//! Multi-key linking at the host: from every party's join keys per channel to people.
//!
//! Rules, in order (documented in `docs/matching.md`):
//! 1. A join key that two or more records of the **same party** hold is ambiguous for
//!    that party: those records link through it to no one (a shared device, say).
//! 2. Records of different parties holding the same join key are linked. Channels are
//!    applied by priority — phone, then e-mail, then device, then opaque ids — and,
//!    within a priority, by channel name and then join key.
//! 3. A person has at most one record per party: a link that would put two records of
//!    one party into the same person is refused and counted as a conflict (the earlier,
//!    higher-priority link stands).

use std::collections::HashMap;

use crate::normalize::IdType;

/// Join keys one party contributes on one channel: `(row, join key)` pairs, where `row`
/// is the party's own record index.
#[derive(Debug, Clone)]
pub struct Contribution {
    /// Index of the party.
    pub party: usize,
    /// The channel's identifier type (for its priority and report family).
    pub id_type: IdType,
    /// The channel's name, e.g. `phone/md5`.
    pub channel: String,
    /// `(row, join key)` for every valid value.
    pub keys: Vec<(u32, [u8; 16])>,
}

/// The outcome of linking.
#[derive(Debug, Clone)]
pub struct Linked {
    /// Records per party.
    pub records: Vec<u32>,
    /// People found with all channels, by the set of parties (bit mask) holding a
    /// record of them; only people with records at two or more parties.
    pub people_by_parties: HashMap<u64, u64>,
    /// The same using one identifier family alone (`phone`, `email`, …).
    pub by_family: HashMap<&'static str, HashMap<u64, u64>>,
    /// Ambiguous records per (party, channel): they share a join key with another
    /// record of the same party.
    pub ambiguous: HashMap<(usize, String), u64>,
    /// Links refused because they would give a person two records of one party, per
    /// identifier family.
    pub conflicts: HashMap<&'static str, u64>,
    /// For every record (parties in order, rows within), the person it belongs to:
    /// an index shared by all records of one person.
    person: Vec<u32>,
    offsets: Vec<usize>,
}

impl Linked {
    /// The person a party's record belongs to, if it is linked to another party's.
    pub fn person_of(&self, party: usize, row: u32) -> Option<u32> {
        let idx = self.offsets.get(party)? + row as usize;
        let p = *self.person.get(idx)?;
        (p != u32::MAX).then_some(p)
    }

    /// People linked across at least all the parties in `mask`.
    pub fn count_covering(counts: &HashMap<u64, u64>, mask: u64) -> u64 {
        counts
            .iter()
            .filter(|(m, _)| *m & mask == mask)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A channel's join keys, sorted, with ambiguous entries marked.
struct SortedChannel {
    id_type: IdType,
    name: String,
    /// `(join key, party, row)`, sorted by key then party then row.
    entries: Vec<([u8; 16], u16, u32)>,
}

struct UnionFind {
    parent: Vec<u32>,
    mask: Vec<u64>,
}

impl UnionFind {
    fn new(party_of: &[u16]) -> Self {
        Self {
            parent: (0..party_of.len() as u32).collect(),
            mask: party_of.iter().map(|p| 1u64 << p).collect(),
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grand = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grand;
            x = grand;
        }
        x
    }

    /// Joins the people of `a` and `b`; false if that would give one person two
    /// records of a party.
    fn union(&mut self, a: u32, b: u32) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return true;
        }
        if self.mask[ra as usize] & self.mask[rb as usize] != 0 {
            return false;
        }
        let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[child as usize] = root;
        self.mask[root as usize] |= self.mask[child as usize];
        true
    }
}

/// Links records across parties. `records[p]` is party p's number of records; at most
/// 64 parties.
pub fn link(records: &[u32], contributions: Vec<Contribution>) -> Linked {
    let mut offsets = Vec::with_capacity(records.len());
    let mut total = 0usize;
    for &n in records {
        offsets.push(total);
        total += n as usize;
    }
    let mut party_of = vec![0u16; total];
    for (p, &n) in records.iter().enumerate() {
        party_of[offsets[p]..offsets[p] + n as usize].fill(p as u16);
    }

    // Gather each channel's keys from every party and sort them.
    let mut by_channel: HashMap<String, SortedChannel> = HashMap::new();
    for c in contributions {
        let ch = by_channel
            .entry(c.channel.clone())
            .or_insert_with(|| SortedChannel {
                id_type: c.id_type,
                name: c.channel.clone(),
                entries: Vec::new(),
            });
        ch.entries
            .extend(c.keys.into_iter().map(|(row, k)| (k, c.party as u16, row)));
    }
    let mut channels: Vec<SortedChannel> = by_channel.into_values().collect();
    channels.sort_by(|a, b| (a.id_type.priority(), &a.name).cmp(&(b.id_type.priority(), &b.name)));
    for ch in &mut channels {
        ch.entries.sort_unstable();
    }

    let mut ambiguous: HashMap<(usize, String), u64> = HashMap::new();
    for ch in &channels {
        for_each_group(&ch.entries, |group, dup_parties| {
            for &(_, p, _) in group {
                if dup_parties & (1u64 << p) != 0 {
                    *ambiguous.entry((p as usize, ch.name.clone())).or_default() += 1;
                }
            }
        });
    }

    let run = |families: Option<&'static str>, conflicts: &mut HashMap<&'static str, u64>| {
        let mut uf = UnionFind::new(&party_of);
        for ch in channels
            .iter()
            .filter(|c| families.is_none_or(|f| c.id_type.family() == f))
        {
            for_each_group(&ch.entries, |group, dup_parties| {
                let mut first: Option<u32> = None;
                for &(_, p, row) in group {
                    if dup_parties & (1u64 << p) != 0 {
                        continue;
                    }
                    let idx = (offsets[p as usize] + row as usize) as u32;
                    match first {
                        None => first = Some(idx),
                        Some(f) => {
                            if !uf.union(f, idx) {
                                *conflicts.entry(ch.id_type.family()).or_default() += 1;
                            }
                        }
                    }
                }
            });
        }
        uf
    };
    let count = |uf: &mut UnionFind| -> HashMap<u64, u64> {
        let mut counts = HashMap::new();
        for x in 0..uf.parent.len() as u32 {
            if uf.find(x) == x && uf.mask[x as usize].count_ones() >= 2 {
                *counts.entry(uf.mask[x as usize]).or_default() += 1;
            }
        }
        counts
    };

    let mut conflicts = HashMap::new();
    let mut uf = run(None, &mut conflicts);
    let people_by_parties = count(&mut uf);
    let mut person = vec![u32::MAX; total];
    let mut ids: HashMap<u32, u32> = HashMap::new();
    for x in 0..total as u32 {
        let root = uf.find(x);
        if uf.mask[root as usize].count_ones() >= 2 {
            let next = ids.len() as u32;
            person[x as usize] = *ids.entry(root).or_insert(next);
        }
    }
    drop(uf);

    let mut families: Vec<&'static str> = channels.iter().map(|c| c.id_type.family()).collect();
    families.sort_unstable();
    families.dedup();
    let mut by_family = HashMap::new();
    for f in families {
        let mut ignored = HashMap::new();
        let mut uf = run(Some(f), &mut ignored);
        by_family.insert(f, count(&mut uf));
    }

    Linked {
        records: records.to_vec(),
        people_by_parties,
        by_family,
        ambiguous,
        conflicts,
        person,
        offsets,
    }
}

/// Calls `f` for every run of entries with one join key, with the bit mask of parties
/// that hold the key more than once in that run.
fn for_each_group(
    entries: &[([u8; 16], u16, u32)],
    mut f: impl FnMut(&[([u8; 16], u16, u32)], u64),
) {
    let mut start = 0;
    while start < entries.len() {
        let key = entries[start].0;
        let mut end = start + 1;
        while end < entries.len() && entries[end].0 == key {
            end += 1;
        }
        let group = &entries[start..end];
        if group.len() > 1 {
            let (mut seen, mut dup) = (0u64, 0u64);
            for &(_, p, _) in group {
                let bit = 1u64 << p;
                if seen & bit != 0 {
                    dup |= bit;
                }
                seen |= bit;
            }
            f(group, dup);
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(b: u8) -> [u8; 16] {
        [b; 16]
    }

    fn contribution(
        party: usize,
        id_type: IdType,
        channel: &str,
        keys: &[(u32, u8)],
    ) -> Contribution {
        Contribution {
            party,
            id_type,
            channel: channel.into(),
            keys: keys.iter().map(|&(r, b)| (r, k(b))).collect(),
        }
    }

    #[test]
    fn links_bridge_and_respect_one_record_per_party() {
        // social(0) –phone– retail(1) –email– brand(2); social row 1 and retail row 1
        // also share a phone, but retail row 1's email would join it to brand row 0,
        // whose person already has retail row 0: a conflict.
        let linked = link(
            &[2, 2, 1],
            vec![
                contribution(0, IdType::Phone, "phone/md5", &[(0, 1), (1, 2)]),
                contribution(1, IdType::Phone, "phone/md5", &[(0, 1), (1, 2)]),
                contribution(1, IdType::Email, "email/sha256", &[(0, 9), (1, 9)]),
                contribution(2, IdType::Email, "email/sha256", &[(0, 9)]),
            ],
        );
        // Email key 9 is held by two retail records: ambiguous, links no one.
        assert_eq!(linked.ambiguous[&(1, "email/sha256".to_string())], 2);
        assert_eq!(Linked::count_covering(&linked.people_by_parties, 0b011), 2);
        assert_eq!(Linked::count_covering(&linked.people_by_parties, 0b101), 0);
        assert_eq!(linked.person_of(0, 0), linked.person_of(1, 0));
        assert_eq!(linked.person_of(2, 0), None);
    }

    #[test]
    fn conflicting_links_are_refused_and_counted() {
        // Phone links social 0, retail 0 and brand 0 into one person; e-mail then tries
        // to add retail 1 to that person through brand 0: a second retail record, refused.
        let linked = link(
            &[1, 2, 1],
            vec![
                contribution(0, IdType::Phone, "phone/md5", &[(0, 1)]),
                contribution(1, IdType::Phone, "phone/md5", &[(0, 1)]),
                contribution(2, IdType::Phone, "phone/md5", &[(0, 1)]),
                contribution(1, IdType::Email, "email/sha256", &[(1, 5)]),
                contribution(2, IdType::Email, "email/sha256", &[(0, 5)]),
            ],
        );
        assert_eq!(linked.conflicts.get("email"), Some(&1));
        assert_eq!(Linked::count_covering(&linked.people_by_parties, 0b111), 1);
        assert_eq!(linked.person_of(1, 1), None);
        let phone_only = &linked.by_family["phone"];
        assert_eq!(Linked::count_covering(phone_only, 0b111), 1);
        assert_eq!(Linked::count_covering(&linked.by_family["email"], 0b110), 1);
    }
}

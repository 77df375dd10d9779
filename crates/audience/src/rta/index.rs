//! The immutable RTA index: who is in which active audience, at which tier.

use std::collections::HashMap;

use jingteng_psi::normalize::{canonical, normalize};
use jingteng_psi::{DeviceType, DigestKind, Form, IdType, Normalized, Reject};
use rayon::slice::ParallelSliceMut as _;

use super::{Error, Result};

/// Campaigns one index holds at most (a membership stores the campaign in 24 bits; the
/// two highest values are markers).
pub const MAX_CAMPAIGNS: usize = (1 << 24) - 2;
/// Tiers one campaign has at most (a membership stores the tier in 8 bits).
pub const MAX_TIERS: usize = 256;
/// The largest bid multiplier accepted.
pub const MAX_MULTIPLIER: f64 = 100.0;

/// A user's device id as the media platform sends it: the MD5 of the canonical device
/// id (Tencent Ads `HASH_IMEI`, `HASH_IDFA`, … conventions). Never printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceMd5(u128);

impl DeviceMd5 {
    /// From the 16 digest bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        // Big-endian, so that the integer order is the byte order and the leading bits
        // are the digest's first bits.
        Self(u128::from_be_bytes(bytes))
    }

    /// The 16 digest bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Parses 32 hex digits (either case), as `jingteng_psi` reads MD5 columns; no heap
    /// allocation.
    pub fn parse_hex(hex: &str) -> Result<Self, Reject> {
        match normalize(IdType::Opaque, Form::Md5, hex) {
            Normalized::Digest(DigestKind::Md5, d) => {
                let bytes: [u8; 16] = d.as_bytes().try_into().map_err(|_| Reject::DigestSyntax)?;
                Ok(Self::from_bytes(bytes))
            }
            _ => Err(Reject::DigestSyntax),
        }
    }

    /// The MD5 of a raw device id's canonical form (IMEI lower-case, IDFA upper-case with
    /// dashes, MAC upper-case without separators, …), as the media platform computes it.
    pub fn of_device(kind: DeviceType, raw: &str) -> Result<Self, Reject> {
        let canonical = canonical(IdType::Device(kind), raw)?;
        let digest = DigestKind::Md5.hash(canonical.as_bytes());
        let bytes: [u8; 16] = digest
            .as_bytes()
            .try_into()
            .map_err(|_| Reject::DigestSyntax)?;
        Ok(Self::from_bytes(bytes))
    }

    /// Lower-case hex, for request paths built by tools and tests.
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    pub(crate) fn key(self) -> u128 {
        self.0
    }

    pub(crate) fn from_key(key: u128) -> Self {
        Self(key)
    }
}

impl std::fmt::Debug for DeviceMd5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Identifiers are never printed, not even hashed.
        f.write_str("DeviceMd5(..)")
    }
}

/// One tier of a campaign's audience: its members and the bid multiplier they get.
#[derive(Debug, Clone)]
pub struct Tier {
    /// Bid multiplier for the members of this tier, in (0, [`MAX_MULTIPLIER`]].
    pub multiplier: f64,
    /// The members' hashed device ids (duplicates are harmless).
    pub members: Vec<DeviceMd5>,
}

/// An active campaign and its audience, by tier. A user in several tiers of one
/// campaign gets the highest multiplier.
#[derive(Debug, Clone)]
pub struct CampaignList {
    /// The campaign id the media platform sends (`C123`): 1–64 letters, digits, `.`,
    /// `_`, `~` or `-`.
    pub id: String,
    /// The tiers; a campaign without tiers answers no to everyone.
    pub tiers: Vec<Tier>,
}

impl CampaignList {
    /// A campaign with no tiers yet.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            tiers: Vec::new(),
        }
    }

    /// Adds a tier.
    #[must_use]
    pub fn tier(mut self, multiplier: f64, members: Vec<DeviceMd5>) -> Self {
        self.tiers.push(Tier {
            multiplier,
            members,
        });
        self
    }
}

/// A pre-serialised answer.
#[derive(Debug)]
struct Answer {
    multiplier: Option<f64>,
    body: Box<[u8]>,
}

impl Answer {
    fn yes(multiplier: f64) -> Self {
        let body = serde_json::json!({"bid": true, "multiplier": multiplier}).to_string();
        Self {
            multiplier: Some(multiplier),
            body: body.into_bytes().into_boxed_slice(),
        }
    }

    fn no() -> Self {
        Self {
            multiplier: None,
            body: Box::from(br#"{"bid":false,"multiplier":0}"#.as_slice()),
        }
    }
}

/// One decision: bid or not, with which multiplier, and the answer's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a>(&'a Answer);

impl<'a> Decision<'a> {
    /// Whether to bid.
    pub fn bid(&self) -> bool {
        self.0.multiplier.is_some()
    }

    /// The bid multiplier, if bidding.
    pub fn multiplier(&self) -> Option<f64> {
        self.0.multiplier
    }

    /// The JSON answer, serialised once when the index was built.
    pub fn body(&self) -> &'a [u8] {
        &self.0.body
    }
}

#[derive(Debug)]
struct Campaign {
    tiers: Vec<Answer>,
}

/// Sizes of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IndexStats {
    /// Users in the index (members of at least one campaign, not suppressed).
    pub users: u64,
    /// Campaigns.
    pub campaigns: u64,
    /// (user, campaign) memberships.
    pub memberships: u64,
    /// Members of the lists left out because they are suppressed.
    pub suppressed_members: u64,
    /// Heap bytes the index holds (capacities of its arrays and its campaign table).
    pub heap_bytes: u64,
}

/// The index of active audiences. Build it with [`RtaIndex::build`]; serve it with a
/// [`super::LiveIndex`].
///
/// Layout: `users` are 32-byte records sorted by MD5 (as a big-endian `u128`), each
/// with up to four memberships inline (`campaign << 8 | tier`; more go to `overflow`);
/// `dir[b]..dir[b + 1]` is the range of users whose MD5's leading `bits` bits are `b`
/// (about 2–4 per bucket: MD5 is uniform). A decision reads one directory entry and
/// one or two records: two or three cache misses on an index far larger than the
/// cache. About 32 + 1.7 bytes per user.
#[derive(Debug)]
pub struct RtaIndex {
    by_id: HashMap<Box<str>, u32, Fnv>,
    campaigns: Vec<Campaign>,
    no: Answer,
    bits: u32,
    dir: Vec<u32>,
    users: Vec<User>,
    overflow: Vec<u32>,
    memberships: u64,
    suppressed_members: u64,
}

/// An empty inline membership slot.
const EMPTY: u32 = u32::MAX;
/// In `slots[0]`: the memberships are `overflow[slots[1]..slots[1] + slots[2]]`.
const SPILLED: u32 = u32::MAX - 1;

/// One user of the index: their MD5 and their memberships.
#[derive(Debug, Clone, Copy)]
struct User {
    key: u128,
    slots: [u32; 4],
}

impl User {
    fn new(key: u128, entries: &[u32], overflow: &mut Vec<u32>) -> Self {
        let mut slots = [EMPTY; 4];
        if entries.len() <= slots.len() {
            for (slot, &e) in slots.iter_mut().zip(entries) {
                *slot = e;
            }
        } else {
            // Fits: overflow.len() <= memberships <= u32::MAX (checked in build).
            slots = [SPILLED, overflow.len() as u32, entries.len() as u32, EMPTY];
            overflow.extend_from_slice(entries);
        }
        Self { key, slots }
    }
}

/// FNV-1a for the campaign table: its keys are the node's own campaign ids, and a
/// lookup cannot change the table, so there is nothing to flood.
#[derive(Debug, Clone, Copy, Default)]
struct Fnv;

#[derive(Debug, Clone, Copy)]
struct FnvHasher(u64);

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Whether a campaign id is 1–64 letters, digits, `.`, `_`, `~` or `-`.
pub(crate) fn valid_campaign_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// Bucket of a key: its leading `bits` bits.
fn bucket(key: u128, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (key >> (128 - bits)) as usize
    }
}

impl RtaIndex {
    /// Builds an index from the campaigns' lists, leaving out every suppressed user
    /// (opt-outs and deletions): they are not kept in memory and get no for every
    /// campaign. The lists are consumed as they are read, to bound memory.
    pub fn build(campaigns: Vec<CampaignList>, suppressed: &[DeviceMd5]) -> Result<Self> {
        if campaigns.len() > MAX_CAMPAIGNS {
            return Err(Error::TooLarge(format!(
                "{} campaigns, at most {MAX_CAMPAIGNS}",
                campaigns.len()
            )));
        }
        let mut by_id = HashMap::with_capacity_and_hasher(campaigns.len(), Fnv);
        let mut table = Vec::with_capacity(campaigns.len());
        let mut total: u64 = 0;
        for (c, campaign) in campaigns.iter().enumerate() {
            if !valid_campaign_id(&campaign.id) {
                return Err(Error::CampaignId(campaign.id.clone()));
            }
            if campaign.tiers.len() > MAX_TIERS {
                return Err(Error::TooManyTiers {
                    campaign: campaign.id.clone(),
                    tiers: campaign.tiers.len(),
                });
            }
            let mut tiers = Vec::with_capacity(campaign.tiers.len());
            for tier in &campaign.tiers {
                let m = tier.multiplier;
                if !(m.is_finite() && m > 0.0 && m <= MAX_MULTIPLIER) {
                    return Err(Error::Multiplier {
                        campaign: campaign.id.clone(),
                        multiplier: m,
                    });
                }
                tiers.push(Answer::yes(m));
                total += tier.members.len() as u64;
            }
            let c = u32::try_from(c).map_err(|_| Error::TooLarge("campaign number".into()))?;
            if by_id
                .insert(campaign.id.clone().into_boxed_str(), c)
                .is_some()
            {
                return Err(Error::DuplicateCampaign(campaign.id.clone()));
            }
            table.push(Campaign { tiers });
        }
        if total > u64::from(u32::MAX) {
            return Err(Error::TooLarge(format!(
                "{total} memberships, at most {}",
                u32::MAX
            )));
        }

        // (key, campaign << 8 | tier) for every listed membership, sorted; the lists are
        // dropped tier by tier as they are copied.
        let mut pairs: Vec<(u64, u64, u32)> = Vec::with_capacity(total as usize);
        for (c, campaign) in campaigns.into_iter().enumerate() {
            for (t, tier) in campaign.tiers.into_iter().enumerate() {
                let entry = (c as u32) << 8 | t as u32;
                pairs.extend(
                    tier.members
                        .into_iter()
                        .map(|d| ((d.0 >> 64) as u64, d.0 as u64, entry)),
                );
            }
        }
        pairs.par_sort_unstable();

        let mut suppressed: Vec<u128> = suppressed.iter().map(|d| d.0).collect();
        suppressed.sort_unstable();
        suppressed.dedup();

        let mut users: Vec<User> = Vec::new();
        let mut overflow: Vec<u32> = Vec::new();
        let mut entries: Vec<u32> = Vec::new();
        let mut memberships = 0u64;
        let mut suppressed_members = 0u64;
        let mut s = 0usize;
        let mut i = 0usize;
        while let Some(&(hi, lo, _)) = pairs.get(i) {
            let key = u128::from(hi) << 64 | u128::from(lo);
            let mut end = i + 1;
            while pairs.get(end).is_some_and(|p| p.0 == hi && p.1 == lo) {
                end += 1;
            }
            while suppressed.get(s).is_some_and(|&x| x < key) {
                s += 1;
            }
            if suppressed.get(s) == Some(&key) {
                suppressed_members += (end - i) as u64;
                i = end;
                continue;
            }
            // Entries of one key are sorted by campaign then tier; keep one per
            // campaign, the tier with the highest multiplier.
            entries.clear();
            let mut last: Option<u32> = None;
            for &(_, _, entry) in pairs.get(i..end).unwrap_or(&[]) {
                let (c, t) = (entry >> 8, entry & 0xff);
                if last == Some(c) {
                    if let Some(prev) = entries.last_mut()
                        && multiplier(&table, c, t) > multiplier(&table, c, *prev & 0xff)
                    {
                        *prev = entry;
                    }
                } else {
                    entries.push(entry);
                    last = Some(c);
                }
            }
            memberships += entries.len() as u64;
            users.push(User::new(key, &entries, &mut overflow));
            i = end;
        }
        drop(pairs);
        users.shrink_to_fit();
        overflow.shrink_to_fit();

        // About 2–4 users per bucket.
        let half = users.len() / 2;
        let bits = if half == 0 {
            0
        } else {
            (usize::BITS - 1 - half.leading_zeros()).min(30)
        };
        let buckets = 1usize << bits;
        let mut dir = Vec::with_capacity(buckets + 1);
        let mut k = 0usize;
        for b in 0..buckets {
            while users.get(k).is_some_and(|u| bucket(u.key, bits) < b) {
                k += 1;
            }
            dir.push(k as u32);
        }
        dir.push(users.len() as u32);

        Ok(Self {
            by_id,
            campaigns: table,
            no: Answer::no(),
            bits,
            dir,
            users,
            overflow,
            memberships,
            suppressed_members,
        })
    }

    /// A user's record.
    fn find(&self, key: u128) -> Option<&User> {
        let b = bucket(key, self.bits);
        let lo = *self.dir.get(b)? as usize;
        let hi = *self.dir.get(b + 1)? as usize;
        let bucket = self.users.get(lo..hi)?;
        let j = bucket.binary_search_by_key(&key, |u| u.key).ok()?;
        bucket.get(j)
    }

    /// Whether a user is in the index (a member of some campaign, not suppressed).
    pub fn contains(&self, device: DeviceMd5) -> bool {
        self.find(device.0).is_some()
    }

    /// The decision for a user and a campaign; `None` if no active campaign has this id.
    /// No heap allocation.
    pub fn decide(&self, campaign: &str, device: DeviceMd5) -> Option<Decision<'_>> {
        let c = *self.by_id.get(campaign)?;
        let answer = self
            .tier_of(c, device.0)
            .and_then(|t| self.campaigns.get(c as usize)?.tiers.get(t as usize))
            .unwrap_or(&self.no);
        Some(Decision(answer))
    }

    fn tier_of(&self, c: u32, key: u128) -> Option<u32> {
        let user = self.find(key)?;
        let entries = match user.slots {
            [SPILLED, from, len, _] => self
                .overflow
                .get(from as usize..from as usize + len as usize)?,
            _ => &user.slots[..],
        };
        // EMPTY (u32::MAX) is never a campaign: c < MAX_CAMPAIGNS.
        entries.iter().find(|&&e| e >> 8 == c).map(|&e| e & 0xff)
    }

    /// The "no" answer (for a suppressed user of a known campaign).
    pub(crate) fn no(&self) -> Decision<'_> {
        Decision(&self.no)
    }

    /// Whether a campaign id is one of this index's.
    pub fn has_campaign(&self, campaign: &str) -> bool {
        self.by_id.contains_key(campaign)
    }

    /// Sizes of the index.
    pub fn stats(&self) -> IndexStats {
        let arrays = self.users.capacity() * std::mem::size_of::<User>()
            + (self.dir.capacity() + self.overflow.capacity()) * 4;
        let table: usize = self
            .by_id
            .keys()
            .map(|k| k.len() + 16 + 4 + 8)
            .sum::<usize>()
            + self
                .campaigns
                .iter()
                .map(|c| {
                    24 + c
                        .tiers
                        .iter()
                        .map(|a| std::mem::size_of::<Answer>() + a.body.len())
                        .sum::<usize>()
                })
                .sum::<usize>();
        IndexStats {
            users: self.users.len() as u64,
            campaigns: self.campaigns.len() as u64,
            memberships: self.memberships,
            suppressed_members: self.suppressed_members,
            heap_bytes: (arrays + table) as u64,
        }
    }
}

fn multiplier(table: &[Campaign], c: u32, t: u32) -> f64 {
    table
        .get(c as usize)
        .and_then(|c| c.tiers.get(t as usize))
        .and_then(|a| a.multiplier)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn d(i: u8) -> DeviceMd5 {
        DeviceMd5::from_bytes([i; 16])
    }

    #[test]
    fn hex_round_trip_either_case() {
        let x = DeviceMd5::of_device(DeviceType::Imei, "86123456789012").unwrap();
        assert_eq!(DeviceMd5::parse_hex(&x.to_hex()).unwrap(), x);
        assert_eq!(DeviceMd5::parse_hex(&x.to_hex().to_uppercase()).unwrap(), x);
        for bad in ["", "abc", &"g".repeat(32), &"0".repeat(31), &"0".repeat(33)] {
            assert_eq!(
                DeviceMd5::parse_hex(bad),
                Err(Reject::DigestSyntax),
                "{bad}"
            );
        }
    }

    #[test]
    fn of_device_hashes_the_canonical_form() {
        // Tencent Ads HASH_IDFA: upper-case with dashes; HASH_IMEI: lower-case.
        let a =
            DeviceMd5::of_device(DeviceType::Idfa, "1e2dfa89-496a-47fd-9941-df1fc4e6484a").unwrap();
        let b =
            DeviceMd5::of_device(DeviceType::Idfa, "1E2DFA89-496A-47FD-9941-DF1FC4E6484A").unwrap();
        assert_eq!(a, b);
        let digest = DigestKind::Md5.hash(b"1E2DFA89-496A-47FD-9941-DF1FC4E6484A");
        assert_eq!(a.to_bytes().as_slice(), digest.as_bytes());
        assert_eq!(format!("{a:?}"), "DeviceMd5(..)");
    }

    #[test]
    fn highest_tier_wins_and_campaigns_are_separate() {
        let index = RtaIndex::build(
            vec![
                CampaignList::new("C1")
                    .tier(1.0, vec![d(1), d(2)])
                    .tier(2.5, vec![d(2)]),
                CampaignList::new("C2").tier(1.5, vec![d(1), d(1)]),
                CampaignList::new("empty"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(index.decide("C1", d(1)).unwrap().multiplier(), Some(1.0));
        assert_eq!(index.decide("C1", d(2)).unwrap().multiplier(), Some(2.5));
        assert_eq!(index.decide("C2", d(1)).unwrap().multiplier(), Some(1.5));
        assert!(!index.decide("C2", d(2)).unwrap().bid());
        assert!(!index.decide("empty", d(1)).unwrap().bid());
        assert!(index.decide("C3", d(1)).is_none());
        assert_eq!(
            index.decide("C1", d(2)).unwrap().body(),
            br#"{"bid":true,"multiplier":2.5}"#
        );
        assert_eq!(
            index.decide("C2", d(2)).unwrap().body(),
            br#"{"bid":false,"multiplier":0}"#
        );
        let s = index.stats();
        assert_eq!((s.users, s.campaigns, s.memberships), (2, 3, 3));
    }

    #[test]
    fn suppressed_users_are_not_kept() {
        let index = RtaIndex::build(
            vec![CampaignList::new("C1").tier(1.0, vec![d(1), d(2), d(3)])],
            &[d(2), d(9)],
        )
        .unwrap();
        assert!(!index.contains(d(2)));
        assert!(!index.decide("C1", d(2)).unwrap().bid());
        assert!(index.decide("C1", d(3)).unwrap().bid());
        assert_eq!(index.stats().suppressed_members, 1);
    }

    #[test]
    fn bad_lists_are_refused() {
        let e = |c: Vec<CampaignList>| RtaIndex::build(c, &[]).unwrap_err().to_string();
        assert!(e(vec![CampaignList::new("C 1")]).contains("campaign id"));
        assert!(e(vec![CampaignList::new("C%31")]).contains("campaign id"));
        assert!(e(vec![CampaignList::new("")]).contains("campaign id"));
        assert!(e(vec![CampaignList::new("C1"), CampaignList::new("C1")]).contains("twice"));
        for m in [0.0, -1.0, f64::NAN, f64::INFINITY, 101.0] {
            assert!(e(vec![CampaignList::new("C1").tier(m, vec![])]).contains("multiplier"));
        }
        let many = (0..257).fold(CampaignList::new("C1"), |c, _| c.tier(1.0, vec![]));
        assert!(e(vec![many]).contains("tiers"));
    }

    #[test]
    fn users_in_many_campaigns_spill_over() {
        let campaigns: Vec<CampaignList> = (0..7)
            .map(|c| {
                let members = if c % 2 == 0 {
                    vec![d(1), d(2)]
                } else {
                    vec![d(1)]
                };
                CampaignList::new(format!("C{c}")).tier(1.0 + f64::from(c), members)
            })
            .collect();
        let index = RtaIndex::build(campaigns, &[]).unwrap();
        for c in 0..7 {
            let want = 1.0 + f64::from(c);
            assert_eq!(
                index.decide(&format!("C{c}"), d(1)).unwrap().multiplier(),
                Some(want)
            );
            let two = index.decide(&format!("C{c}"), d(2)).unwrap().multiplier();
            assert_eq!(two, (c % 2 == 0).then_some(want));
        }
        assert_eq!(index.stats().memberships, 11);
        assert_eq!(std::mem::size_of::<User>(), 32);
    }

    #[test]
    fn an_empty_index_answers_no() {
        let index = RtaIndex::build(vec![CampaignList::new("C1")], &[]).unwrap();
        assert!(!index.decide("C1", d(0)).unwrap().bid());
        assert!(!index.contains(DeviceMd5::from_bytes([0xff; 16])));
    }

    #[test]
    fn keys_sharing_a_bucket_are_all_found() {
        // Keys that differ only in their last byte fall in one bucket.
        let members: Vec<DeviceMd5> =
            (0..=255u8)
                .map(|i| {
                    let mut b = [7u8; 16];
                    b[15] = i;
                    DeviceMd5::from_bytes(b)
                })
                .chain((0..1000u32).map(|i| {
                    DeviceMd5::of_device(DeviceType::Imei, &format!("86{i:013}")).unwrap()
                }))
                .collect();
        let index =
            RtaIndex::build(vec![CampaignList::new("C").tier(1.0, members.clone())], &[]).unwrap();
        assert!(members.iter().all(|&m| index.contains(m)));
        let mut other = [7u8; 16];
        other[14] = 8;
        assert!(!index.contains(DeviceMd5::from_bytes(other)));
    }
}

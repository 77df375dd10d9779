//! Ground truth: counters every chunk fills from the people it generates, summed over
//! chunks and written as `truth.json`. Their meaning is documented in
//! `docs/synthetic-world.md`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::world::{self, BRANDS, CATEGORIES, Campaign, MONTHS};

/// Parties in their fixed order; overlap keys list parties in this order. `news` is
/// there only in worlds with two media parties.
pub(crate) const PARTIES: [&str; 4] = ["social", "retail", "brand", "news"];
/// Identifier types, in linking priority order.
pub(crate) const ID_TYPES: [&str; 3] = ["phone", "email", "device"];
/// The sets of two or more parties, as bit masks over [`PARTIES`]: the first four
/// without news, then the seven with it.
pub(crate) const PARTY_SETS: [u8; 11] = [
    0b0011, 0b0101, 0b0110, 0b0111, 0b1001, 0b1010, 0b1011, 0b1100, 0b1101, 0b1110, 0b1111,
];

pub(crate) fn party_set_key(mask: u8) -> String {
    PARTIES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, p)| *p)
        .collect::<Vec<_>>()
        .join("+")
}

/// Whether a person's records at the parties in `mask` all fall in one connected
/// component, where records (one per `present` party) are joined by the `edges`
/// `(party, party, [phone, email, device])` of the identifier types `types` allows.
/// Parties outside `mask` may bridge: the linking runs over the whole collaboration.
pub(crate) fn connected(
    present: [bool; 4],
    edges: &[(usize, usize, [bool; 3])],
    mask: u8,
    types: [bool; 3],
) -> bool {
    // Each record takes the lowest label of any record it is joined to, until stable.
    let mut component = [0usize, 1, 2, 3];
    let mut changed = true;
    while changed {
        changed = false;
        for &(a, b, by_type) in edges {
            let joined = present[a] && present[b] && (0..3).any(|t| types[t] && by_type[t]);
            if joined && component[a] != component[b] {
                let low = component[a].min(component[b]);
                component[a] = low;
                component[b] = low;
                changed = true;
            }
        }
    }
    let mut members = (0..4).filter(|p| mask & (1 << p) != 0);
    let first = members.next().map(|p| component[p]);
    members.all(|p| Some(component[p]) == first)
}

/// Identifier columns whose validity is tallied: (party index, column name).
pub(crate) const ID_COLUMNS: [(usize, &str); 9] = [
    (0, "phone_md5"),
    (0, "device_id"),
    (1, "phone"),
    (1, "email"),
    (1, "device_id"),
    (2, "phone_sha256"),
    (2, "email"),
    (3, "phone_sha256"),
    (3, "device_id"),
];

/// How one identifier cell looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cell {
    Missing,
    Valid,
    Invalid,
    /// Valid, but the same value is held by another record of the same party.
    Ambiguous,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct IdTally {
    rows: u64,
    missing: u64,
    valid: u64,
    invalid: u64,
    /// Valid values that another record of the same party holds too (a shared device):
    /// no match can tell the records apart, so they link no one.
    ambiguous: u64,
}

/// Figures of one campaign over one population (all people, or linked people only).
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct CampaignFigures {
    pub(crate) test: u64,
    pub(crate) control: u64,
    pub(crate) test_conversions: u64,
    pub(crate) control_conversions: u64,
    /// Test-group converters who would not have converted without this campaign.
    pub(crate) incremental_conversions: u64,
    pub(crate) attributed_conversions: u64,
    pub(crate) attributed_gmv_fen: i64,
    pub(crate) reach: u64,
    pub(crate) impressions: u64,
    pub(crate) clicks: u64,
    /// People by number of impressions: index 0 = 1 impression, …, index 9 = 10 or more.
    pub(crate) frequency: [u64; 10],
}

impl CampaignFigures {
    fn merge(&mut self, o: &CampaignFigures) {
        self.test += o.test;
        self.control += o.control;
        self.test_conversions += o.test_conversions;
        self.control_conversions += o.control_conversions;
        self.incremental_conversions += o.incremental_conversions;
        self.attributed_conversions += o.attributed_conversions;
        self.attributed_gmv_fen += o.attributed_gmv_fen;
        self.reach += o.reach;
        self.impressions += o.impressions;
        self.clicks += o.clicks;
        for (a, b) in self.frequency.iter_mut().zip(o.frequency) {
            *a += b;
        }
    }
}

/// Reach of one campaign across the two media parties, over one population: everyone
/// (`all`), or records as a perfect match lets the room count them (`matched`: a
/// person's social and news records are one person only when linkable).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct ReachTally {
    /// People with at least one impression on social.
    pub(crate) social: u64,
    /// On news.
    pub(crate) news: u64,
    /// On either (de-duplicated).
    pub(crate) deduplicated: u64,
    /// On both.
    pub(crate) overlap: u64,
    /// On social only: the reach social adds to news.
    pub(crate) incremental_social: u64,
    /// On news only: the reach news adds to social.
    pub(crate) incremental_news: u64,
    /// People by impressions on both together: 1, 2, …, 9, 10 or more.
    pub(crate) frequency: [u64; 10],
}

impl ReachTally {
    /// Adds one person with `social` and `news` impressions (not both zero).
    pub(crate) fn add(&mut self, social: u64, news: u64) {
        self.social += u64::from(social > 0);
        self.news += u64::from(news > 0);
        self.deduplicated += 1;
        self.overlap += u64::from(social > 0 && news > 0);
        self.incremental_social += u64::from(news == 0);
        self.incremental_news += u64::from(social == 0);
        self.frequency[((social + news).min(10) - 1) as usize] += 1;
    }

    fn merge(&mut self, o: &ReachTally) {
        self.social += o.social;
        self.news += o.news;
        self.deduplicated += o.deduplicated;
        self.overlap += o.overlap;
        self.incremental_social += o.incremental_social;
        self.incremental_news += o.incremental_news;
        for (a, b) in self.frequency.iter_mut().zip(o.frequency) {
            *a += b;
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OverlapTally {
    pub(crate) people: u64,
    pub(crate) linkable: u64,
    pub(crate) by_id_type: [u64; 3],
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MonthTally {
    pub(crate) impressions: u64,
    pub(crate) clicks: u64,
    pub(crate) conversions: u64,
    pub(crate) gmv_fen: i64,
}

/// Counters one chunk fills; chunks are merged in order.
#[derive(Debug, Clone)]
pub(crate) struct TruthAcc {
    pub(crate) people: u64,
    pub(crate) party_people: [u64; 4],
    pub(crate) ids: [IdTally; 9],
    pub(crate) overlap: [OverlapTally; 11],
    /// Per campaign: [all people, linked people].
    pub(crate) campaigns: Vec<[CampaignFigures; 2]>,
    /// Per campaign, with two media parties: [all people, as matched].
    pub(crate) reach: Vec<[ReachTally; 2]>,
    pub(crate) months: [MonthTally; 6],
    pub(crate) caused_orders: u64,
}

impl TruthAcc {
    pub(crate) fn new(campaigns: usize) -> Self {
        Self {
            people: 0,
            party_people: [0; 4],
            ids: [IdTally::default(); 9],
            overlap: [OverlapTally::default(); 11],
            campaigns: vec![Default::default(); campaigns],
            reach: vec![Default::default(); campaigns],
            months: [MonthTally::default(); 6],
            caused_orders: 0,
        }
    }

    pub(crate) fn tally_id(&mut self, column: usize, cell: Cell) {
        let t = &mut self.ids[column];
        t.rows += 1;
        match cell {
            Cell::Missing => t.missing += 1,
            Cell::Valid => t.valid += 1,
            Cell::Invalid => t.invalid += 1,
            Cell::Ambiguous => t.ambiguous += 1,
        }
    }

    pub(crate) fn merge(&mut self, o: &TruthAcc) {
        self.people += o.people;
        for (a, b) in self.party_people.iter_mut().zip(o.party_people) {
            *a += b;
        }
        for (a, b) in self.ids.iter_mut().zip(o.ids) {
            a.rows += b.rows;
            a.missing += b.missing;
            a.valid += b.valid;
            a.invalid += b.invalid;
            a.ambiguous += b.ambiguous;
        }
        for (a, b) in self.overlap.iter_mut().zip(o.overlap) {
            a.people += b.people;
            a.linkable += b.linkable;
            for (x, y) in a.by_id_type.iter_mut().zip(b.by_id_type) {
                *x += y;
            }
        }
        for (a, b) in self.campaigns.iter_mut().zip(&o.campaigns) {
            a[0].merge(&b[0]);
            a[1].merge(&b[1]);
        }
        for (a, b) in self.reach.iter_mut().zip(&o.reach) {
            a[0].merge(&b[0]);
            a[1].merge(&b[1]);
        }
        for (a, b) in self.months.iter_mut().zip(o.months) {
            a.impressions += b.impressions;
            a.clicks += b.clicks;
            a.conversions += b.conversions;
            a.gmv_fen += b.gmv_fen;
        }
        self.caused_orders += o.caused_orders;
    }
}

#[derive(Debug, Serialize)]
struct Overlap {
    people: u64,
    linkable: u64,
    by_id_type: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
struct CampaignTruth {
    brand: &'static str,
    category: &'static str,
    start_date: String,
    end_date: String,
    spend_fen: i64,
    /// The known effect: added probability that an exposed retail member buys the brand.
    true_uplift: f64,
    all: CampaignReport,
    linked: CampaignReport,
}

#[derive(Debug, Serialize)]
struct CampaignReport {
    #[serde(flatten)]
    figures: CampaignFigures,
    test_rate: Option<f64>,
    control_rate: Option<f64>,
    /// Incremental conversions over the test group's conversions without the campaign.
    true_relative_lift: Option<f64>,
}

impl CampaignReport {
    fn new(figures: CampaignFigures) -> Self {
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        Self {
            test_rate: ratio(figures.test_conversions, figures.test),
            control_rate: ratio(figures.control_conversions, figures.control),
            true_relative_lift: ratio(
                figures.incremental_conversions,
                figures.test_conversions - figures.incremental_conversions,
            ),
            figures,
        }
    }
}

#[derive(Debug, Serialize)]
struct Month {
    spend_fen: i64,
    impressions: u64,
    clicks: u64,
    /// Last-touch attributed conversions (orders), by the month of the order.
    conversions: u64,
    gmv_fen: i64,
    campaigns_active: u64,
    brands_active: u64,
    brands: Vec<&'static str>,
}

/// The world as `truth.json` states it.
#[derive(Debug, Serialize)]
pub(crate) struct Truth {
    world: WorldInfo,
    people: BTreeMap<&'static str, u64>,
    identifiers: BTreeMap<&'static str, BTreeMap<&'static str, IdTally>>,
    overlap: BTreeMap<String, Overlap>,
    campaigns: BTreeMap<String, CampaignTruth>,
    program: BTreeMap<&'static str, Month>,
    /// Cross-media reach per campaign (worlds with two media parties only).
    #[serde(skip_serializing_if = "Option::is_none")]
    reach: Option<BTreeMap<String, CampaignReach>>,
}

#[derive(Debug, Serialize)]
struct CampaignReach {
    /// Whether the campaign also ran on news.
    on_news: bool,
    all: ReachTally,
    matched: ReachTally,
}

#[derive(Debug, Serialize)]
pub(crate) struct WorldInfo {
    pub(crate) generator: String,
    pub(crate) seed: u64,
    pub(crate) scale: String,
    pub(crate) period_start: &'static str,
    pub(crate) period_end: &'static str,
    pub(crate) time_zone: &'static str,
    pub(crate) focal_brand: &'static str,
    pub(crate) caused_orders: u64,
}

fn date(day: i64) -> String {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = i64::from(world::EPOCH_DAYS_AT_START) + day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Truth {
    /// The truth of a world with `news` (a second media party) or without.
    pub(crate) fn build(
        info: WorldInfo,
        acc: &TruthAcc,
        campaigns: &[Campaign],
        news: &[Option<crate::world::NewsPlan>],
        media: u8,
    ) -> Self {
        let parties = if media >= 2 { 4 } else { 3 };
        let mut people = BTreeMap::new();
        people.insert("world", acc.people);
        for (p, n) in PARTIES.iter().zip(acc.party_people).take(parties) {
            people.insert(*p, n);
        }
        let mut identifiers: BTreeMap<&'static str, BTreeMap<&'static str, IdTally>> =
            BTreeMap::new();
        for ((party, column), tally) in ID_COLUMNS
            .iter()
            .zip(acc.ids)
            .filter(|((p, _), _)| *p < parties)
        {
            identifiers
                .entry(PARTIES[*party])
                .or_default()
                .insert(column, tally);
        }
        let sets = if media >= 2 { 11 } else { 4 };
        let overlap = PARTY_SETS
            .iter()
            .zip(acc.overlap)
            .take(sets)
            .map(|(mask, o)| {
                (
                    party_set_key(*mask),
                    Overlap {
                        people: o.people,
                        linkable: o.linkable,
                        by_id_type: ID_TYPES.iter().copied().zip(o.by_id_type).collect(),
                    },
                )
            })
            .collect();
        let campaign_truth = campaigns
            .iter()
            .zip(&acc.campaigns)
            .map(|(c, [all, linked])| {
                (
                    c.id.clone(),
                    CampaignTruth {
                        brand: BRANDS[c.brand].0,
                        category: CATEGORIES[c.category()],
                        start_date: date(c.start_day),
                        end_date: date(c.end_day),
                        spend_fen: c.spend_fen,
                        true_uplift: c.uplift,
                        all: CampaignReport::new(all.clone()),
                        linked: CampaignReport::new(linked.clone()),
                    },
                )
            })
            .collect();
        let program = MONTHS
            .iter()
            .enumerate()
            .map(|(m, (name, first))| {
                let last = MONTHS.get(m + 1).map_or(world::PERIOD_DAYS, |n| n.1);
                let active: Vec<&Campaign> = campaigns
                    .iter()
                    .filter(|c| c.start_day < last && c.end_day >= *first)
                    .collect();
                let mut brands: Vec<&'static str> =
                    active.iter().map(|c| BRANDS[c.brand].0).collect();
                brands.sort_unstable();
                brands.dedup();
                let t = acc.months[m];
                (
                    *name,
                    Month {
                        spend_fen: campaigns
                            .iter()
                            .map(|c| {
                                (*first..last)
                                    .map(|d| world::daily_spend(c, d))
                                    .sum::<i64>()
                            })
                            .sum(),
                        impressions: t.impressions,
                        clicks: t.clicks,
                        conversions: t.conversions,
                        gmv_fen: t.gmv_fen,
                        campaigns_active: active.len() as u64,
                        brands_active: brands.len() as u64,
                        brands,
                    },
                )
            })
            .collect();
        let reach = (media >= 2).then(|| {
            campaigns
                .iter()
                .zip(&acc.reach)
                .zip(news)
                .map(|((c, [all, matched]), plan)| {
                    (
                        c.id.clone(),
                        CampaignReach {
                            on_news: plan.is_some(),
                            all: *all,
                            matched: *matched,
                        },
                    )
                })
                .collect()
        });
        Self {
            world: info,
            people,
            identifiers,
            overlap,
            campaigns: campaign_truth,
            program,
            reach,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(date(0), "2026-01-01");
        assert_eq!(date(31), "2026-02-01");
        assert_eq!(date(180), "2026-06-30");
    }

    #[test]
    fn linking_bridges_through_a_third_party() {
        let phone = [true, false, false];
        let edges = [(0, 1, phone), (0, 2, [false; 3]), (1, 2, phone)];
        let three = [true, true, true, false];
        assert!(connected(three, &edges, 0b101, [true; 3]));
        assert!(connected(three, &edges, 0b111, phone));
        assert!(!connected(three, &edges, 0b111, [false, true, false]));
        // Without the bridge, social and brand stay apart.
        assert!(!connected(
            [true, false, true, false],
            &edges,
            0b101,
            [true; 3]
        ));
        // A fourth party can bridge too.
        let device = [false, false, true];
        let edges = [(0, 3, device), (2, 3, phone)];
        assert!(connected(
            [true, false, true, true],
            &edges,
            0b101,
            [true; 3]
        ));
        assert!(!connected([true, false, true, true], &edges, 0b101, phone));
    }

    #[test]
    fn party_set_keys_follow_party_order() {
        let keys: Vec<String> = PARTY_SETS.iter().map(|m| party_set_key(*m)).collect();
        assert_eq!(
            keys[..4],
            [
                "social+retail",
                "social+brand",
                "retail+brand",
                "social+retail+brand"
            ]
        );
        assert_eq!(keys[4], "social+news");
        assert_eq!(keys[10], "social+retail+brand+news");
    }
}

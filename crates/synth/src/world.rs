//! The fixed parts of the world: calendar, categories, brands, regions, stores, and the
//! campaigns the media platform runs for the brands.

use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

/// 2026-01-01 00:00 +08:00 as Unix seconds: the first instant of the simulated period.
pub(crate) const PERIOD_START: i64 = 1_767_196_800;
/// Days in the simulated period (2026-01-01 … 2026-06-30).
pub(crate) const PERIOD_DAYS: i64 = 181;
pub(crate) const DAY: i64 = 86_400;
/// Days from 1970-01-01 to 2026-01-01 (for Arrow `Date32`).
pub(crate) const EPOCH_DAYS_AT_START: i32 = 20_454;
/// The period's months, as `YYYY-MM`, with their first day as a day offset.
pub(crate) const MONTHS: [(&str, i64); 6] = [
    ("2026-01", 0),
    ("2026-02", 31),
    ("2026-03", 59),
    ("2026-04", 90),
    ("2026-05", 120),
    ("2026-06", 151),
];
/// Conversions count when the order is within this many days after a campaign's last day.
pub(crate) const CONVERSION_TAIL_DAYS: i64 = 7;
/// Last-touch windows (seconds): a click within 7 days, a view within 1 day.
pub(crate) const CLICK_WINDOW: i64 = 7 * DAY;
pub(crate) const VIEW_WINDOW: i64 = DAY;
/// Attributed conversions per person, at most (IPA's default cap).
pub(crate) const ATTRIBUTION_CAP: usize = 8;
/// The brand that runs its own node with its CRM (`brand/crm`).
pub(crate) const FOCAL_BRAND: usize = 0;

/// Index of the month a day offset falls in.
pub(crate) fn month_of_day(day: i64) -> usize {
    MONTHS
        .iter()
        .rposition(|&(_, first)| day >= first)
        .unwrap_or(0)
}

/// Product categories, which are also interests on social.
pub(crate) const CATEGORIES: [&str; 8] = [
    "home_appliance",
    "beauty",
    "hair_care",
    "digital",
    "apparel",
    "baby",
    "food",
    "sports",
];
/// Interests on social: the categories plus two with no retail category.
pub(crate) const INTERESTS: [&str; 10] = [
    "home_appliance",
    "beauty",
    "hair_care",
    "digital",
    "apparel",
    "baby",
    "food",
    "sports",
    "gaming",
    "travel",
];
/// Base price of a category's middle SKU, in fen.
const CATEGORY_PRICE_FEN: [i64; 8] = [
    299_900, 29_900, 8_900, 199_900, 39_900, 15_900, 5_900, 49_900,
];

/// Brands, two per category; brand 0 is the focal brand with its own node.
pub(crate) const BRANDS: [(&str, usize); 16] = [
    ("Aurora", 0),
    ("Kestrel", 0),
    ("Lumiere", 1),
    ("Petalia", 1),
    ("Silkwave", 2),
    ("Verdant", 2),
    ("Nimbus", 3),
    ("Quanta", 3),
    ("Meridian", 4),
    ("Threadline", 4),
    ("Sprout", 5),
    ("Cradle", 5),
    ("Harvest", 6),
    ("Orchard", 6),
    ("Summit", 7),
    ("Stride", 7),
];
pub(crate) const SKUS_PER_BRAND: usize = 4;
const SKU_PRICE_FACTOR_PCT: [i64; SKUS_PER_BRAND] = [60, 100, 140, 200];

/// The two brands of a category.
pub(crate) fn brands_of_category(category: usize) -> [usize; 2] {
    [category * 2, category * 2 + 1]
}

pub(crate) fn sku_name(brand: usize, sku: usize) -> String {
    format!(
        "{}-{:02}",
        &BRANDS[brand].0[..3].to_ascii_uppercase(),
        sku + 1
    )
}

pub(crate) fn sku_price_fen(brand: usize, sku: usize) -> i64 {
    CATEGORY_PRICE_FEN[BRANDS[brand].1] * SKU_PRICE_FACTOR_PCT[sku] / 100
}

/// Regions with their population weight and share of people in tier-1/2 cities.
pub(crate) const REGIONS: [(&str, u32, f64); 10] = [
    ("Beijing", 6, 0.95),
    ("Shanghai", 6, 0.95),
    ("Guangdong", 14, 0.55),
    ("Zhejiang", 9, 0.45),
    ("Jiangsu", 10, 0.45),
    ("Sichuan", 10, 0.3),
    ("Hubei", 7, 0.35),
    ("Shandong", 12, 0.25),
    ("Henan", 12, 0.15),
    ("Fujian", 6, 0.3),
];
pub(crate) const STORES_PER_REGION: usize = 8;

pub(crate) fn store_id(region: usize, store: usize) -> String {
    format!("S{:02}{:02}", region + 1, store + 1)
}

/// Social placements an impression can appear in.
pub(crate) const PLACEMENTS: [&str; 4] =
    ["moments", "official_accounts", "channels", "mini_programs"];

/// One advertising campaign on the social platform.
#[derive(Debug, Clone)]
pub(crate) struct Campaign {
    pub(crate) id: String,
    pub(crate) brand: usize,
    /// First day (offset from the period start), inclusive.
    pub(crate) start_day: i64,
    /// Last day, inclusive.
    pub(crate) end_day: i64,
    pub(crate) spend_fen: i64,
    pub(crate) objective: &'static str,
    /// Share of eligible people held out as the never-exposed control group, in percent.
    pub(crate) holdout_pct: u32,
    /// Share of the test group that is actually reached.
    pub(crate) reach_rate: f64,
    /// Mean of the extra impressions (beyond the first) per reached person.
    pub(crate) extra_impressions: f64,
    pub(crate) ctr: f64,
    /// The known effect: how much being exposed raises the probability that a retail
    /// member buys the brand during the campaign (absolute, e.g. 0.02 = +2 points).
    pub(crate) uplift: f64,
    /// Eligibility (targeting) for people interested / not interested in the category.
    pub(crate) eligible_if_interested: f64,
    pub(crate) eligible_otherwise: f64,
    /// Placement weights, summing to 100.
    pub(crate) placement_weights: [u32; 4],
}

impl Campaign {
    pub(crate) fn category(&self) -> usize {
        BRANDS[self.brand].1
    }

    pub(crate) fn start_ts(&self) -> i64 {
        PERIOD_START + self.start_day * DAY
    }

    /// First instant after the campaign's last day.
    pub(crate) fn end_ts(&self) -> i64 {
        PERIOD_START + (self.end_day + 1) * DAY
    }

    /// First instant after the conversion window (the last day plus the tail).
    pub(crate) fn conversion_end_ts(&self) -> i64 {
        self.end_ts() + CONVERSION_TAIL_DAYS * DAY
    }

    pub(crate) fn days(&self) -> i64 {
        self.end_day - self.start_day + 1
    }
}

pub(crate) const CAMPAIGNS: usize = 30;
const OBJECTIVES: [&str; 5] = [
    "conversion",
    "conversion",
    "conversion",
    "traffic",
    "awareness",
];

/// The world's campaigns, sorted by start day; spend is sized for `people`.
pub(crate) fn campaigns(rng: &mut ChaCha8Rng, people: u64) -> Vec<Campaign> {
    let mut out: Vec<Campaign> = (0..CAMPAIGNS)
        .map(|i| {
            // The focal brand runs every sixth campaign; the rest are spread over brands.
            let brand = if i % 6 == 0 {
                FOCAL_BRAND
            } else {
                rng.random_range(1..BRANDS.len())
            };
            let days = rng.random_range(7..=28);
            let start_day = rng.random_range(0..=(PERIOD_DAYS - CONVERSION_TAIL_DAYS - days - 1));
            let eligible_if_interested = rng.random_range(0.45..0.7);
            let eligible_otherwise = rng.random_range(0.05..0.12);
            let holdout_pct = *[10u32, 15, 20].choose(rng).unwrap_or(&10);
            let reach_rate = rng.random_range(0.65..0.85);
            let extra_impressions = rng.random_range(3.0..7.0);
            let cpm_fen: f64 = rng.random_range(2_000.0..8_000.0);
            // Planned impressions (what the spend buys), from the expected audience.
            let planned_impressions = people as f64
                * 0.88
                * (0.3 * eligible_if_interested + 0.7 * eligible_otherwise)
                * (1.0 - f64::from(holdout_pct) / 100.0)
                * reach_rate
                * (1.0 + extra_impressions);
            let mut placement_weights = [0u32; 4];
            let mut left = 100;
            for w in placement_weights.iter_mut().take(3) {
                *w = rng.random_range(0..=left / 2);
                left -= *w;
            }
            placement_weights[3] = left;
            Campaign {
                id: String::new(),
                brand,
                start_day,
                end_day: start_day + days - 1,
                spend_fen: (cpm_fen * planned_impressions / 1_000.0)
                    .round()
                    .max(1_000.0) as i64,
                objective: OBJECTIVES.choose(rng).copied().unwrap_or("conversion"),
                holdout_pct,
                reach_rate,
                extra_impressions,
                ctr: rng.random_range(0.01..0.04),
                uplift: rng.random_range(0.01..0.04),
                eligible_if_interested,
                eligible_otherwise,
                placement_weights,
            }
        })
        .collect();
    out.sort_by_key(|c| (c.start_day, c.end_day, c.brand));
    for (i, c) in out.iter_mut().enumerate() {
        c.id = format!("C{:02}", i + 1);
    }
    out
}

/// A campaign's spend, in fen, on each day of the period: the spend split evenly over
/// its days, with the remainder on the first day.
pub(crate) fn daily_spend(c: &Campaign, day: i64) -> i64 {
    if day < c.start_day || day > c.end_day {
        return 0;
    }
    let per_day = c.spend_fen / c.days();
    if day == c.start_day {
        per_day + c.spend_fen % c.days()
    } else {
        per_day
    }
}

/// Placements on the news app.
pub(crate) const NEWS_PLACEMENTS: [&str; 4] = ["feed", "video", "search", "detail_page"];

/// How one campaign also runs on the second media party (`news`, with `--media 2`).
/// News exposures reach news users only, are not held out, and change no purchases:
/// they exist for cross-media reach and frequency.
#[derive(Debug, Clone)]
pub(crate) struct NewsPlan {
    /// Eligibility (targeting) for people interested / not interested in the category.
    pub(crate) eligible_if_interested: f64,
    pub(crate) eligible_otherwise: f64,
    /// Share of eligible news users actually reached.
    pub(crate) reach_rate: f64,
    /// Mean of the extra impressions (beyond the first) per reached person.
    pub(crate) extra_impressions: f64,
    pub(crate) ctr: f64,
    /// Placement weights, summing to 100.
    pub(crate) placement_weights: [u32; 4],
}

/// Which campaigns also run on news (about 60%), from their own random stream so that
/// the social world is the same with or without news.
pub(crate) fn news_plans(rng: &mut ChaCha8Rng, campaigns: usize) -> Vec<Option<NewsPlan>> {
    (0..campaigns)
        .map(|_| {
            let runs = rng.random_bool(0.6);
            let mut placement_weights = [0u32; 4];
            let mut left = 100;
            for w in placement_weights.iter_mut().take(3) {
                *w = rng.random_range(0..=left / 2);
                left -= *w;
            }
            placement_weights[3] = left;
            let plan = NewsPlan {
                eligible_if_interested: rng.random_range(0.3..0.6),
                eligible_otherwise: rng.random_range(0.03..0.1),
                reach_rate: rng.random_range(0.4..0.7),
                extra_impressions: rng.random_range(1.0..4.0),
                ctr: rng.random_range(0.005..0.02),
                placement_weights,
            };
            runs.then_some(plan)
        })
        .collect()
}

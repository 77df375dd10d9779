//! People: each exists once, with a latent profile, and every party sees a subset of
//! them in its own way. A person is generated from `(seed, person index)` alone, so
//! chunks can be generated in any order and in parallel with identical results.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

use crate::Result;
use crate::ids::{self, DeviceKind, IdKeys};
use crate::tables::{ChunkRows, Encoded, Table};
use crate::truth::{self, Cell, PARTY_SETS, TruthAcc};
use crate::world::{
    self, ATTRIBUTION_CAP, BRANDS, CATEGORIES, CLICK_WINDOW, Campaign, DAY, FOCAL_BRAND, INTERESTS,
    NEWS_PLACEMENTS, NewsPlan, PERIOD_DAYS, PERIOD_START, PLACEMENTS, REGIONS, SKUS_PER_BRAND,
    VIEW_WINDOW,
};

/// People per chunk. Fixed: order ids and row shuffles depend on it.
pub(crate) const CHUNK: u64 = 4_096;

/// Everything shared by all people of one world.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) seed: u64,
    /// Number of people.
    pub(crate) people: u64,
    pub(crate) keys: IdKeys,
    pub(crate) campaigns: Vec<Campaign>,
    /// Media parties: 1 (social) or 2 (social and news).
    pub(crate) media: u8,
    /// Per campaign, how it runs on news (with two media parties).
    pub(crate) news: Vec<Option<NewsPlan>>,
}

impl World {
    pub(crate) fn new(seed: u64, people: u64, media: u8) -> Self {
        let mut rng = rng_for(seed, u64::MAX, 9);
        let campaigns = world::campaigns(&mut rng, people);
        // News plans come from their own stream: the social world does not change.
        let news = if media >= 2 {
            world::news_plans(&mut rng_for(seed, u64::MAX, 10), campaigns.len())
        } else {
            vec![None; campaigns.len()]
        };
        Self {
            seed,
            people,
            keys: IdKeys::new(seed),
            campaigns,
            media,
            news,
        }
    }
}

/// An independent random stream for one `(seed, subject, purpose)`.
pub(crate) fn rng_for(seed: u64, subject: u64, stream: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&subject.to_le_bytes());
    key[16..24].copy_from_slice(b"jingteng");
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream);
    rng
}

const AGE_BANDS: [(&str, i32, i32, u32); 5] = [
    ("18-24", 18, 24, 15),
    ("25-34", 25, 34, 28),
    ("35-44", 35, 44, 24),
    ("45-54", 45, 54, 18),
    ("55+", 55, 70, 15),
];

fn age_band(age: i32) -> &'static str {
    AGE_BANDS.iter().find(|b| age <= b.2).map_or("55+", |b| b.0)
}

fn pick_weighted<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|i| i.1).sum();
    let mut x = rng.random_range(0..total);
    for &(item, w) in items {
        if x < w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

/// The identity part of a person: cheap to regenerate, so that a person can look at its
/// household partner (for shared devices) without generating the partner's behaviour.
#[derive(Debug, Clone, Copy)]
struct Core {
    age: i32,
    female: bool,
    region: usize,
    tier: i32,
    social: bool,
    retail: bool,
    phone_changed: bool,
    device: DeviceKind,
    /// Registered a device with the social platform.
    social_device: bool,
    /// The device reports the all-zero id (ad tracking limited).
    device_zero: bool,
    /// Would log into the social app on the household partner's device.
    share_flag: bool,
}

fn core(seed: u64, person: u64) -> Core {
    let mut rng = rng_for(seed, person, 0);
    let band = pick_weighted(&mut rng, &AGE_BANDS.map(|(_, lo, hi, w)| ((lo, hi), w)));
    let age = rng.random_range(band.0..=band.1);
    let female = rng.random_bool(0.52);
    let region = pick_weighted(
        &mut rng,
        &std::array::from_fn::<_, 10, _>(|i| (i, REGIONS[i].1)),
    );
    let tier = if rng.random_bool(REGIONS[region].2) {
        rng.random_range(1..=2)
    } else {
        rng.random_range(3..=5)
    };
    let social = rng.random_bool(0.88);
    let retail = rng.random_bool(if tier <= 2 { 0.6 } else { 0.42 });
    let phone_changed = rng.random_bool(0.03);
    let device = match rng.random_range(0..100) {
        0..25 => DeviceKind::Imei,
        25..70 => DeviceKind::Oaid,
        _ => DeviceKind::Idfa,
    };
    Core {
        age,
        female,
        region,
        tier,
        social,
        retail,
        phone_changed,
        device,
        social_device: rng.random_bool(0.9),
        device_zero: rng.random_bool(0.005),
        share_flag: person.is_multiple_of(2) && rng.random_bool(0.02),
    }
}

/// Whether even-indexed `person` uses its partner's (`person + 1`) device on social.
/// The last person of a world with an odd number of people has no partner.
fn shares_partner_device(world: &World, person: u64, me: &Core) -> bool {
    if !(me.share_flag && me.social && me.social_device) || person + 1 >= world.people {
        return false;
    }
    let partner = core(world.seed, person + 1);
    partner.social && partner.social_device && !partner.device_zero
}

fn interest_prob(interest: usize, female: bool, age: i32, tier: i32) -> f64 {
    match interest {
        0 => {
            if (25..45).contains(&age) {
                0.35
            } else {
                0.2
            }
        }
        1 => {
            if female {
                0.55
            } else {
                0.1
            }
        }
        2 => {
            if female {
                0.4
            } else {
                0.12
            }
        }
        3 => {
            if female {
                0.25
            } else {
                0.5
            }
        }
        4 => {
            if female {
                0.45
            } else {
                0.25
            }
        }
        5 => {
            if (25..40).contains(&age) {
                0.3
            } else {
                0.04
            }
        }
        6 => 0.4,
        7 => {
            if female {
                0.2
            } else {
                0.35
            }
        }
        8 => match (age < 35, female) {
            (true, false) => 0.5,
            (true, true) => 0.25,
            _ => 0.1,
        },
        _ => {
            if tier <= 2 {
                0.35
            } else {
                0.18
            }
        }
    }
}

const SURNAMES: [&str; 12] = [
    "wang", "li", "zhang", "liu", "chen", "yang", "zhao", "huang", "zhou", "wu", "xu", "sun",
];
const GIVEN: [&str; 12] = [
    "wei", "fang", "na", "min", "jing", "lei", "qiang", "li", "jun", "yan", "tao", "ming",
];
/// Share of each hour of the day in shopping, evening-heavy.
const HOUR_WEIGHTS: [(i64, u32); 24] = [
    (0, 3),
    (1, 1),
    (2, 1),
    (3, 1),
    (4, 1),
    (5, 1),
    (6, 2),
    (7, 3),
    (8, 4),
    (9, 5),
    (10, 6),
    (11, 6),
    (12, 7),
    (13, 6),
    (14, 5),
    (15, 5),
    (16, 5),
    (17, 5),
    (18, 6),
    (19, 8),
    (20, 10),
    (21, 10),
    (22, 8),
    (23, 5),
];

#[derive(Debug, Clone)]
struct Order {
    ts: i64,
    brand: usize,
    sku: usize,
    quantity: i32,
    amount_fen: i64,
    offline: bool,
    /// The campaign whose exposure caused this order (it would not exist otherwise).
    caused_by: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Touch {
    ts: i64,
    campaign: usize,
    click: bool,
    placement: usize,
}

fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    // Unwrap safety: `mean` is positive and finite here.
    #[allow(clippy::unwrap_used)]
    let d = Poisson::new(mean).unwrap();
    d.sample(rng) as u64
}

/// Generates people `range` (chunk number `index`) into batches for every table and
/// their contribution to the truth.
pub(crate) fn generate_chunk(
    world: &World,
    index: u64,
    range: Range<u64>,
) -> Result<(Vec<(Table, Encoded)>, TruthAcc)> {
    let mut rows = ChunkRows::default();
    let mut acc = TruthAcc::new(world.campaigns.len());
    let mut next_order = index * 100_000_000 + 1;
    for person in range {
        generate_person(world, person, &mut rows, &mut acc, &mut next_order);
    }
    let mut shuffle = rng_for(world.seed, index, 8);
    Ok((rows.finish(&mut shuffle, world.media)?, acc))
}

#[allow(clippy::too_many_lines)]
fn generate_person(
    world: &World,
    person: u64,
    rows: &mut ChunkRows,
    acc: &mut TruthAcc,
    next_order: &mut u64,
) {
    let seed = world.seed;
    let keys = &world.keys;
    let me = core(seed, person);
    let mut rng = rng_for(seed, person, 1);
    acc.people += 1;

    // ---- latent profile ----
    let interests: [bool; 10] =
        std::array::from_fn(|i| rng.random_bool(interest_prob(i, me.female, me.age, me.tier)));
    let primary = {
        let mut best = (0usize, -1.0f64);
        for (i, &has) in interests.iter().enumerate() {
            let score = if has { 1.0 } else { 0.0 }
                + interest_prob(i, me.female, me.age, me.tier) * rng.random::<f64>();
            if score > best.1 {
                best = (i, score);
            }
        }
        best.0
    };
    let affluence = [1.3, 1.15, 1.0, 0.85, 0.7][(me.tier - 1) as usize];
    let preferred: [usize; 8] = std::array::from_fn(|cat| {
        let [a, b] = world::brands_of_category(cat);
        let p_first = if a == FOCAL_BRAND {
            if me.tier <= 2 { 0.6 } else { 0.4 }
        } else {
            0.5
        };
        if rng.random_bool(p_first) { a } else { b }
    });

    // ---- retail orders (background behaviour) ----
    let mut orders: Vec<Order> = Vec::new();
    if me.retail {
        for cat in 0..CATEGORIES.len() {
            let base = if cat == 6 { 0.25 } else { 0.05 };
            let bonus = if interests[cat] { 0.25 } else { 0.0 };
            let monthly = (base + bonus) * affluence;
            for _ in 0..poisson(&mut rng, monthly * 6.0) {
                let day = rng.random_range(0..PERIOD_DAYS);
                let hour = pick_weighted(&mut rng, &HOUR_WEIGHTS);
                let ts = PERIOD_START + day * DAY + hour * 3_600 + rng.random_range(0..3_600);
                let [a, b] = world::brands_of_category(cat);
                let brand = if rng.random_bool(0.7) {
                    preferred[cat]
                } else if preferred[cat] == a {
                    b
                } else {
                    a
                };
                orders.push(new_order(&mut rng, ts, brand, 0.25, None));
            }
        }
    }

    // ---- campaigns: eligibility, holdout, exposures, caused purchases ----
    let mut touches: Vec<Touch> = Vec::new();
    // Per campaign: 0 = not eligible, 1 = test, 2 = control.
    let mut group = vec![0u8; world.campaigns.len()];
    if me.social {
        for (ci, c) in world.campaigns.iter().enumerate() {
            let p_eligible = if interests[c.category()] {
                c.eligible_if_interested
            } else {
                c.eligible_otherwise
            };
            if !rng.random_bool(p_eligible) {
                continue;
            }
            if rng.random_bool(f64::from(c.holdout_pct) / 100.0) {
                group[ci] = 2;
                continue;
            }
            group[ci] = 1;
            if !rng.random_bool(c.reach_rate) {
                continue;
            }
            let first = touches.len();
            let impressions = 1 + poisson(&mut rng, c.extra_impressions);
            for _ in 0..impressions {
                let ts = rng.random_range(c.start_ts()..c.end_ts());
                let placement = pick_weighted(
                    &mut rng,
                    &std::array::from_fn::<_, 4, _>(|i| (i, c.placement_weights[i])),
                );
                touches.push(Touch {
                    ts,
                    campaign: ci,
                    click: false,
                    placement,
                });
                if rng.random_bool(c.ctr) {
                    let ts = ts + rng.random_range(3..=90);
                    touches.push(Touch {
                        ts,
                        campaign: ci,
                        click: true,
                        placement,
                    });
                }
            }
            if me.retail && rng.random_bool(c.uplift) {
                // The exposure causes a purchase of the brand shortly after a touch:
                // within 3 days of a click, or 20 hours of a view.
                let mine = &touches[first..];
                let clicks: Vec<&Touch> = mine.iter().filter(|t| t.click).collect();
                let ts = if clicks.is_empty() {
                    let t = mine[rng.random_range(0..mine.len())];
                    t.ts + rng.random_range(300..=20 * 3_600)
                } else {
                    let t = clicks[rng.random_range(0..clicks.len())];
                    t.ts + rng.random_range(600..=3 * DAY)
                };
                orders.push(new_order(&mut rng, ts, c.brand, 0.15, Some(ci)));
            }
        }
    }
    orders.sort_by_key(|o| o.ts);
    touches.sort_by_key(|t| (t.ts, t.campaign, t.click));

    // ---- the brand's own customers ----
    let focal_spend: i64 = orders
        .iter()
        .filter(|o| o.brand == FOCAL_BRAND)
        .map(|o| o.amount_fen)
        .sum();
    let bought_focal = orders.iter().any(|o| o.brand == FOCAL_BRAND);
    let brand_member = rng.random_bool(if bought_focal {
        0.45
    } else if interests[0] {
        0.06
    } else {
        0.02
    });

    // ---- identifiers as each party holds them ----
    let phone = keys.phone(person, false);
    let new_phone = me.phone_changed.then(|| keys.phone(person, true));
    let current_phone = new_phone.as_deref().unwrap_or(&phone);
    let name = format!(
        "{}.{}",
        SURNAMES[rng.random_range(0..SURNAMES.len())],
        GIVEN[rng.random_range(0..GIVEN.len())]
    );
    let email = keys.email(person, &name);
    let own_device = keys.device(person, me.device);

    // Social: registered long ago, so it holds the old number if the person changed it.
    let (social_phone_cell, social_phone) = if me.social && rng.random_bool(0.8) {
        let hex = ids::md5_hex(&phone);
        if rng.random_bool(0.005) {
            (Cell::Invalid, Some(ids::invalid_hex(&hex)))
        } else if rng.random_bool(0.05) {
            (Cell::Valid, Some(hex.to_ascii_uppercase()))
        } else {
            (Cell::Valid, Some(hex))
        }
    } else {
        (Cell::Missing, None)
    };
    let (social_device_cell, social_device, social_device_kind) =
        if !(me.social && me.social_device) {
            (Cell::Missing, None, None)
        } else if person.is_multiple_of(2) && shares_partner_device(world, person, &me) {
            let partner = core(seed, person + 1);
            (
                Cell::Ambiguous,
                Some(keys.device(person + 1, partner.device)),
                Some(partner.device),
            )
        } else if me.device_zero {
            (
                Cell::Invalid,
                Some(me.device.zero_value().to_string()),
                Some(me.device),
            )
        } else {
            let shared_with_partner = person % 2 == 1 && {
                let partner = core(seed, person - 1);
                shares_partner_device(world, person - 1, &partner)
            };
            let cell = if shared_with_partner {
                Cell::Ambiguous
            } else {
                Cell::Valid
            };
            (cell, Some(own_device.clone()), Some(me.device))
        };

    // Retail: current number in whatever format the member typed, e-mail, app device.
    let (retail_phone_cell, retail_phone) = if me.retail && rng.random_bool(0.97) {
        if rng.random_bool(0.005) {
            (
                Cell::Invalid,
                Some(ids::invalid_phone(current_phone, &mut rng)),
            )
        } else {
            (Cell::Valid, Some(ids::messy_phone(current_phone, &mut rng)))
        }
    } else {
        (Cell::Missing, None)
    };
    let (retail_email_cell, retail_email) = messy_email_cell(&mut rng, me.retail, 0.65, &email);
    let (retail_device_cell, retail_device) = if me.retail && rng.random_bool(0.35) {
        if me.device_zero {
            (Cell::Invalid, Some(me.device.zero_value().to_string()))
        } else if me.device == DeviceKind::Idfa && rng.random_bool(0.4) {
            (Cell::Valid, Some(own_device.to_ascii_lowercase()))
        } else {
            (Cell::Valid, Some(own_device.clone()))
        }
    } else {
        (Cell::Missing, None)
    };

    // Brand: SHA-256 of the number the customer gave (sometimes the old one), e-mail.
    let brand_number = if me.phone_changed && rng.random_bool(0.4) {
        &phone
    } else {
        current_phone
    };
    let (brand_phone_cell, brand_phone) = if brand_member && rng.random_bool(0.85) {
        let hex = ids::sha256_hex(brand_number);
        if rng.random_bool(0.005) {
            (Cell::Invalid, Some(ids::invalid_hex(&hex)))
        } else {
            (Cell::Valid, Some(hex))
        }
    } else {
        (Cell::Missing, None)
    };
    let (brand_email_cell, brand_email) = messy_email_cell(&mut rng, brand_member, 0.8, &email);

    // ---- news: the second media party (`--media 2`), from its own random stream ----
    let news = (world.media >= 2)
        .then(|| news_person(world, person, &me, &interests, current_phone, &own_device))
        .flatten();
    let (news_phone_cell, news_device_cell) = news
        .as_ref()
        .map_or((Cell::Missing, Cell::Missing), |n| (n.phone.0, n.device.0));

    if me.social {
        acc.party_people[0] += 1;
        acc.tally_id(0, social_phone_cell);
        acc.tally_id(1, social_device_cell);
    }
    if me.retail {
        acc.party_people[1] += 1;
        acc.tally_id(2, retail_phone_cell);
        acc.tally_id(3, retail_email_cell);
        acc.tally_id(4, retail_device_cell);
    }
    if brand_member {
        acc.party_people[2] += 1;
        acc.tally_id(5, brand_phone_cell);
        acc.tally_id(6, brand_email_cell);
    }
    if news.is_some() {
        acc.party_people[3] += 1;
        acc.tally_id(7, news_phone_cell);
        acc.tally_id(8, news_device_cell);
    }

    // ---- which records a perfect match can link, and through which identifier ----
    let valid = |c: Cell| c == Cell::Valid;
    // Edges between this person's records, by identifier type [phone, email, device].
    // Social holds the number the person first registered (`phone`); the others hold
    // the current one, except a brand customer who gave the old one.
    // Social holds only MD5 and the brand only SHA-256 of a phone, so those two can
    // never meet on phone directly; the retailer's raw numbers hash to either.
    let edges = [
        (
            0,
            1,
            [
                valid(social_phone_cell) && valid(retail_phone_cell) && phone == current_phone,
                false,
                valid(social_device_cell) && valid(retail_device_cell),
            ],
        ),
        (0, 2, [false; 3]),
        (
            1,
            2,
            [
                valid(retail_phone_cell)
                    && valid(brand_phone_cell)
                    && brand_number == current_phone,
                valid(retail_email_cell) && valid(brand_email_cell),
                false,
            ],
        ),
        // News holds SHA-256 of the current number and the person's own device: it
        // meets social on device only (social's phones are MD5), the retailer on both,
        // the brand on phone when the brand holds the current number.
        (
            0,
            3,
            [
                false,
                false,
                valid(social_device_cell) && valid(news_device_cell),
            ],
        ),
        (
            1,
            3,
            [
                valid(retail_phone_cell) && valid(news_phone_cell),
                false,
                valid(retail_device_cell) && valid(news_device_cell),
            ],
        ),
        (
            2,
            3,
            [
                valid(brand_phone_cell) && valid(news_phone_cell) && brand_number == current_phone,
                false,
                false,
            ],
        ),
    ];
    let present = [me.social, me.retail, brand_member, news.is_some()];
    let sets = if world.media >= 2 {
        &PARTY_SETS[..]
    } else {
        &PARTY_SETS[..4]
    };
    let mut linked_sr = false;
    for (slot, &mask) in sets.iter().enumerate() {
        if !(0..4).all(|p| mask & (1 << p) == 0 || present[p]) {
            continue;
        }
        let linked = truth::connected(present, &edges, mask, [true; 3]);
        let o = &mut acc.overlap[slot];
        o.people += 1;
        o.linkable += u64::from(linked);
        for t in 0..3 {
            let only = std::array::from_fn(|i| i == t);
            o.by_id_type[t] += u64::from(truth::connected(present, &edges, mask, only));
        }
        if mask == 0b011 {
            linked_sr = linked;
        }
    }

    // ---- campaign truth: holdout, conversions, reach, attribution ----
    let variants: &[usize] = if linked_sr { &[0, 1] } else { &[0] };
    for (ci, c) in world.campaigns.iter().enumerate() {
        if group[ci] == 0 {
            continue;
        }
        let in_window =
            |o: &&Order| o.brand == c.brand && o.ts >= c.start_ts() && o.ts < c.conversion_end_ts();
        let converted = orders.iter().any(|o| in_window(&o));
        let without_campaign = orders
            .iter()
            .filter(in_window)
            .any(|o| o.caused_by != Some(ci));
        let impressions = touches
            .iter()
            .filter(|t| t.campaign == ci && !t.click)
            .count() as u64;
        let clicks = touches
            .iter()
            .filter(|t| t.campaign == ci && t.click)
            .count() as u64;
        for &v in variants {
            let f = &mut acc.campaigns[ci][v];
            if group[ci] == 1 {
                f.test += 1;
                if converted {
                    f.test_conversions += 1;
                    if !without_campaign {
                        f.incremental_conversions += 1;
                    }
                }
            } else {
                f.control += 1;
                if converted {
                    f.control_conversions += 1;
                }
            }
            if impressions > 0 {
                f.reach += 1;
                f.impressions += impressions;
                f.clicks += clicks;
                f.frequency[(impressions.min(10) - 1) as usize] += 1;
            }
        }
    }
    if world.media >= 2 {
        // Two records exposed to one campaign are one person in the room only when
        // the match can link the social and the news record.
        let linked_sn =
            me.social && news.is_some() && truth::connected(present, &edges, 0b1001, [true; 3]);
        let news_touches = news.as_ref().map_or(&[][..], |n| &n.touches[..]);
        for ci in 0..world.campaigns.len() {
            let on =
                |ts: &[Touch]| ts.iter().filter(|t| t.campaign == ci && !t.click).count() as u64;
            let (s, k) = (on(&touches), on(news_touches));
            if s + k == 0 {
                continue;
            }
            let [all, matched] = &mut acc.reach[ci];
            all.add(s, k);
            if s > 0 && k > 0 && !linked_sn {
                matched.add(s, 0);
                matched.add(0, k);
            } else {
                matched.add(s, k);
            }
        }
    }
    for t in &touches {
        let m = &mut acc.months[world::month_of_day((t.ts - PERIOD_START).div_euclid(DAY))];
        if t.click {
            m.clicks += 1;
        } else {
            m.impressions += 1;
        }
    }
    let mut attributed = 0;
    for o in &orders {
        if attributed >= ATTRIBUTION_CAP {
            break;
        }
        let Some(ci) = last_touch(&touches, &world.campaigns, o) else {
            continue;
        };
        attributed += 1;
        for &v in variants {
            let f = &mut acc.campaigns[ci][v];
            f.attributed_conversions += 1;
            f.attributed_gmv_fen += o.amount_fen;
        }
        let m = &mut acc.months[world::month_of_day((o.ts - PERIOD_START).div_euclid(DAY))];
        m.conversions += 1;
        m.gmv_fen += o.amount_fen;
    }

    // ---- rows ----
    let social_id = me.social.then(|| keys.social_user_id(person));
    let retail_id = me.retail.then(|| keys.retail_member_id(person));
    let brand_id = brand_member.then(|| keys.brand_customer_id(person));
    let band = age_band(me.age);
    let gender = if me.female { "F" } else { "M" };

    if let Some(uid) = &social_id {
        let u = &mut rows.social_users;
        u.user_id.append_value(uid);
        u.phone_md5.append_option(social_phone.as_deref());
        u.device_id.append_option(social_device.as_deref());
        u.device_type
            .append_option(social_device_kind.map(DeviceKind::as_str));
        u.age_band.append_value(band);
        // A few social users never said.
        u.gender
            .append_value(if rng.random_bool(0.02) { "U" } else { gender });
        u.city_tier.append_value(me.tier);
        u.interest.append_value(INTERESTS[primary]);
        for t in &touches {
            let e = &mut rows.exposures;
            e.user_id.append_value(uid);
            e.campaign_id.append_value(&world.campaigns[t.campaign].id);
            e.ts.append_value(t.ts);
            e.placement.append_value(PLACEMENTS[t.placement]);
            e.kind
                .append_value(if t.click { "click" } else { "impression" });
        }
        for (ci, g) in group.iter().enumerate() {
            if *g != 0 {
                let h = &mut rows.holdout;
                h.user_id.append_value(uid);
                h.campaign_id.append_value(&world.campaigns[ci].id);
                h.grp.append_value(if *g == 1 { "test" } else { "control" });
            }
        }
    }
    if let Some(mid) = &retail_id {
        let u = &mut rows.retail_users;
        u.member_id.append_value(mid);
        u.phone.append_option(retail_phone.as_deref());
        u.email.append_option(retail_email.as_deref());
        u.device_id.append_option(retail_device.as_deref());
        u.device_type
            .append_option(retail_device.as_ref().map(|_| me.device.as_str()));
        u.level.append_value(match orders.len() {
            12.. => "plus",
            6..=11 => "gold",
            3..=5 => "silver",
            _ => "regular",
        });
        u.region.append_value(REGIONS[me.region].0);
        u.age_band.append_value(band);
        u.gender.append_value(gender);
        for o in &orders {
            let id = *next_order as i64;
            *next_order += 1;
            let r = &mut rows.orders;
            r.order_id.append_value(id);
            r.member_id.append_value(mid);
            r.ts.append_value(o.ts);
            r.sku.append_value(world::sku_name(o.brand, o.sku));
            r.category.append_value(CATEGORIES[BRANDS[o.brand].1]);
            r.brand.append_value(BRANDS[o.brand].0);
            r.quantity.append_value(o.quantity);
            r.amount_fen.append_value(o.amount_fen);
            r.channel
                .append_value(if o.offline { "offline" } else { "online" });
            r.store_id.append_option(
                o.offline
                    .then(|| world::store_id(me.region, (id as usize) % world::STORES_PER_REGION)),
            );
            if let Some(ci) = o.caused_by {
                rows.caused.order_id.append_value(id);
                rows.caused
                    .campaign_id
                    .append_value(&world.campaigns[ci].id);
                acc.caused_orders += 1;
            }
        }
    }
    if let Some(cid) = &brand_id {
        let b = &mut rows.crm;
        b.customer_id.append_value(cid);
        b.phone_sha256.append_option(brand_phone.as_deref());
        b.email.append_option(brand_email.as_deref());
        b.tier.append_value(match focal_spend {
            500_000.. => "black",
            200_000..=499_999 => "gold",
            1..=199_999 => "silver",
            _ => "member",
        });
        b.opted_out.append_value(rng.random_bool(0.03));
        b.consent.append_value(match rng.random_range(0..100) {
            0..85 => "marketing;analytics",
            85..97 => "analytics",
            _ => "none",
        });
    }
    if let Some(n) = &news {
        let uid = keys.news_user_id(person);
        let u = &mut rows.news_users;
        u.user_id.append_value(&uid);
        u.phone_sha256.append_option(n.phone.1.as_deref());
        u.device_id.append_option(n.device.1.as_deref());
        u.device_type
            .append_option(n.device.1.as_ref().map(|_| me.device.as_str()));
        u.age_band.append_value(band);
        u.gender.append_value(gender);
        u.city_tier.append_value(me.tier);
        for t in &n.touches {
            let e = &mut rows.news_exposures;
            e.user_id.append_value(&uid);
            e.campaign_id.append_value(&world.campaigns[t.campaign].id);
            e.ts.append_value(t.ts);
            e.placement.append_value(NEWS_PLACEMENTS[t.placement]);
            e.kind
                .append_value(if t.click { "click" } else { "impression" });
        }
        rows.news_people.person_id.append_value(person as i64);
        rows.news_people.news_user_id.append_value(&uid);
    }
    let p = &mut rows.people;
    p.person_id.append_value(person as i64);
    p.social_user_id.append_option(social_id);
    p.retail_member_id.append_option(retail_id);
    p.brand_customer_id.append_option(brand_id);
    p.age.append_value(me.age);
    p.gender.append_value(gender);
    p.region.append_value(REGIONS[me.region].0);
    p.city_tier.append_value(me.tier);
    let list: Vec<&str> = (0..INTERESTS.len())
        .filter(|&i| interests[i])
        .map(|i| INTERESTS[i])
        .collect();
    p.interests.append_value(list.join(";"));
}

/// A person as the news app knows them.
struct NewsPerson {
    /// `phone_sha256`: SHA-256 of the current number.
    phone: (Cell, Option<String>),
    /// `device_id`: the person's own device.
    device: (Cell, Option<String>),
    touches: Vec<Touch>,
}

/// The person's record and exposures at news, or `None` when they do not use it. Drawn
/// from the person's own stream 2, so the other parties' data does not change.
fn news_person(
    world: &World,
    person: u64,
    me: &Core,
    interests: &[bool; 10],
    current_phone: &str,
    own_device: &str,
) -> Option<NewsPerson> {
    let mut rng = rng_for(world.seed, person, 2);
    // The news app skews to lower-tier cities.
    if !rng.random_bool(if me.tier >= 3 { 0.6 } else { 0.45 }) {
        return None;
    }
    let phone = if rng.random_bool(0.75) {
        let hex = ids::sha256_hex(current_phone);
        if rng.random_bool(0.005) {
            (Cell::Invalid, Some(ids::invalid_hex(&hex)))
        } else if rng.random_bool(0.05) {
            (Cell::Valid, Some(hex.to_ascii_uppercase()))
        } else {
            (Cell::Valid, Some(hex))
        }
    } else {
        (Cell::Missing, None)
    };
    let device = if rng.random_bool(0.85) {
        if me.device_zero {
            (Cell::Invalid, Some(me.device.zero_value().to_string()))
        } else if me.device == DeviceKind::Idfa && rng.random_bool(0.3) {
            (Cell::Valid, Some(own_device.to_ascii_lowercase()))
        } else {
            (Cell::Valid, Some(own_device.to_string()))
        }
    } else {
        (Cell::Missing, None)
    };
    let mut touches = Vec::new();
    for (ci, c) in world.campaigns.iter().enumerate() {
        let Some(plan) = &world.news[ci] else {
            continue;
        };
        let p_eligible = if interests[c.category()] {
            plan.eligible_if_interested
        } else {
            plan.eligible_otherwise
        };
        if !rng.random_bool(p_eligible) || !rng.random_bool(plan.reach_rate) {
            continue;
        }
        for _ in 0..1 + poisson(&mut rng, plan.extra_impressions) {
            let ts = rng.random_range(c.start_ts()..c.end_ts());
            let placement = pick_weighted(
                &mut rng,
                &std::array::from_fn::<_, 4, _>(|i| (i, plan.placement_weights[i])),
            );
            touches.push(Touch {
                ts,
                campaign: ci,
                click: false,
                placement,
            });
            if rng.random_bool(plan.ctr) {
                touches.push(Touch {
                    ts: ts + rng.random_range(3..=90),
                    campaign: ci,
                    click: true,
                    placement,
                });
            }
        }
    }
    touches.sort_by_key(|t| (t.ts, t.campaign, t.click));
    Some(NewsPerson {
        phone,
        device,
        touches,
    })
}

fn new_order(
    rng: &mut ChaCha8Rng,
    ts: i64,
    brand: usize,
    offline_share: f64,
    caused_by: Option<usize>,
) -> Order {
    let sku = rng.random_range(0..SKUS_PER_BRAND);
    let quantity = match rng.random_range(0..100) {
        0..80 => 1,
        80..95 => 2,
        _ => 3,
    };
    Order {
        ts,
        brand,
        sku,
        quantity,
        amount_fen: world::sku_price_fen(brand, sku) * i64::from(quantity),
        offline: rng.random_bool(offline_share),
        caused_by,
    }
}

fn messy_email_cell(
    rng: &mut ChaCha8Rng,
    member: bool,
    share: f64,
    canonical: &str,
) -> (Cell, Option<String>) {
    if !(member && rng.random_bool(share)) {
        return (Cell::Missing, None);
    }
    if rng.random_bool(0.005) {
        (Cell::Invalid, Some(ids::invalid_email(canonical, rng)))
    } else {
        (Cell::Valid, Some(ids::messy_email(canonical, rng)))
    }
}

/// Last-touch attribution of one order: the latest click of a campaign of the order's
/// brand within 7 days before it, else the latest impression within 1 day; ties go to
/// the campaign listed first.
fn last_touch(touches: &[Touch], campaigns: &[Campaign], o: &Order) -> Option<usize> {
    let best = |click: bool, window: i64| {
        touches
            .iter()
            .filter(|t| {
                t.click == click
                    && campaigns[t.campaign].brand == o.brand
                    && t.ts < o.ts
                    && o.ts - t.ts <= window
            })
            .max_by_key(|t| (t.ts, std::cmp::Reverse(t.campaign)))
            .map(|t| t.campaign)
    };
    best(true, CLICK_WINDOW).or_else(|| best(false, VIEW_WINDOW))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: with an odd number of people, the last person (even index) used to
    /// "share" the device of a partner who does not exist.
    #[test]
    fn the_last_person_of_an_odd_world_shares_no_device() {
        let seed = 11;
        let (person, me) = (0..1_000_000u64)
            .step_by(2)
            .map(|p| (p, core(seed, p)))
            .find(|(p, c)| {
                let partner = core(seed, p + 1);
                c.share_flag
                    && c.social
                    && c.social_device
                    && partner.social
                    && partner.social_device
                    && !partner.device_zero
            })
            .expect("some person shares a device");
        let whole = World::new(seed, person + 2, 1);
        let odd = World::new(seed, person + 1, 1);
        assert!(shares_partner_device(&whole, person, &me));
        assert!(!shares_partner_device(&odd, person, &me));
    }
}

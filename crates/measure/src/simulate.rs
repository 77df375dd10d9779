//! How often the lift intervals cover the true effect, over simulated studies.
//!
//! A study is simulated at the level of the lift's input table, not as a whole
//! synthetic world (which takes minutes per world): per person of a randomised holdout
//! — test or control — whether they converted and their GMV, drawn with a known true
//! effect. The rows are registered as `measure.lift_outcomes` in an in-memory engine
//! through the same code as the real report (so the DP release, contribution bounding,
//! clamping and noise run as they do on real data), and the real lift code releases
//! the group figures and computes the intervals. Each study is one fresh engine (its
//! own budget and answer cache).
//!
//! The data of a study is seeded; the release noise comes from the engine's OpenSSL
//! sampler and cannot be seeded, so two runs of one study differ by that noise only.

use std::sync::Arc;

use jingteng_engine::datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use jingteng_engine::datafusion::arrow::datatypes::{DataType, Field, Schema};
use jingteng_engine::datafusion::catalog::MemTable;
use jingteng_engine::datafusion::common::TableReference;
use jingteng_engine::{Engine, ReleaseMode};
use serde::Serialize;

use crate::lift::{LiftSettings, lift_released, register_outcomes_from};
use crate::release::Sources;
use crate::stats::{Interval, Proportion, SeededRng, z_two_sided};
use crate::{Error, Result};

/// Relative effects on the conversion rate, taken in turn by the studies (zero
/// included: the intervals must cover "no effect" too).
pub const EFFECTS: [f64; 5] = [0.0, 0.05, 0.1, 0.2, 0.4];
/// Extra GMV per converter of the test group, per mille, alternating by block of
/// five studies (so value can move without conversion moving).
const VALUE_EFFECTS_PERMILLE: [i64; 2] = [0, 100];
/// Basket prices, yuan: a converter buys one of them, 1–3 times (60% / 30% / 10%).
/// The dearest basket, 3 × ¥599 × 1.1, stays under the ¥2,000 bound on an order
/// amount, so a DP release clamps nothing and the true effect is exact.
const PRICES_YUAN: [i64; 7] = [49, 99, 129, 199, 299, 399, 599];
/// The campaign of every study, and its spend (fen).
const CAMPAIGN: &str = "S01";
const SPEND_FEN: i64 = 50_000_000;
/// The bare table the simulated rows are registered as, in the trusted session.
const RAW: &str = "lift_sim_rows";

/// What the simulation draws.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CoverageSettings {
    /// Studies to simulate.
    pub studies: u32,
    /// Seed of the first study (study `i` uses a seed derived from it and `i`).
    pub seed: u64,
    /// How the group figures are released (DP is the case that matters).
    #[serde(serialize_with = "mode_name")]
    pub mode: ReleaseMode,
    /// Linked people per study (test + control), drawn log-uniformly between these.
    pub people: (u64, u64),
    /// Bootstrap replicates of the value interval.
    pub bootstrap_draws: u32,
}

fn mode_name<S: serde::Serializer>(m: &ReleaseMode, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(match m {
        ReleaseMode::Dp => "dp",
        ReleaseMode::Threshold => "threshold",
    })
}

impl Default for CoverageSettings {
    fn default() -> Self {
        Self {
            studies: 1_000,
            seed: 1,
            mode: ReleaseMode::Dp,
            people: (20_000, 200_000),
            bootstrap_draws: 2_000,
        }
    }
}

/// The intervals whose coverage is counted.
pub const INTERVALS: [(&str, &str); 5] = [
    ("itt_difference", "Newcombe hybrid score"),
    ("relative_lift", "log-adjusted ratio (Katz)"),
    ("incremental_gmv_per_person", "parametric bootstrap"),
    ("incremental_gmv", "parametric bootstrap"),
    ("iroas", "parametric bootstrap"),
];

/// One simulated study and whether each interval covered its true value (in the
/// order of [`INTERVALS`]; `None` when the report gave no interval).
#[derive(Debug, Clone, Serialize)]
pub struct Study {
    /// Its index.
    pub index: u32,
    /// Test people (true).
    pub test_people: u64,
    /// Control people (true).
    pub control_people: u64,
    /// True conversion rate of the control group.
    pub control_rate: f64,
    /// True relative effect on the conversion rate.
    pub relative_effect: f64,
    /// True relative effect on the GMV of a converter.
    pub value_effect: f64,
    /// True values of the estimands, in the order of [`INTERVALS`].
    pub truth: [f64; 5],
    /// The intervals the report gave.
    pub intervals: [Option<Interval>; 5],
    /// Whether each covered its true value.
    pub covered: [Option<bool>; 5],
}

/// Coverage of one interval over the studies.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalCoverage {
    /// The estimand (a field of the lift report).
    pub interval: String,
    /// How its interval is computed.
    pub method: String,
    /// Studies in which the report gave this interval.
    pub studies: u32,
    /// Of them, those whose interval held the true value.
    pub covered: u32,
    /// Studies without an interval (a group not released, or a noisy count not
    /// positive).
    pub missing: u32,
    /// `covered / studies`.
    pub coverage: f64,
    /// 95% Wilson interval of the coverage itself.
    pub coverage_low: f64,
    /// Upper end.
    pub coverage_high: f64,
}

/// Coverage of the three kinds of interval at one effect size.
#[derive(Debug, Clone, Serialize)]
pub struct EffectCoverage {
    /// True relative effect on the conversion rate.
    pub relative_effect: f64,
    /// Studies with it.
    pub studies: u32,
    /// Coverage of the difference, relative-lift and total-GMV intervals.
    pub coverage: [f64; 3],
}

/// The result of a coverage simulation.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    /// What was simulated.
    pub settings: CoverageSettings,
    /// Confidence the intervals claim.
    pub confidence: f64,
    /// Per interval.
    pub intervals: Vec<IntervalCoverage>,
    /// Per effect size.
    pub by_effect: Vec<EffectCoverage>,
    /// How the studies were simulated, in one sentence.
    pub model: String,
}

/// The collaboration a study's engine runs under: the synthetic world's tables and
/// release rules (ε 0.5 per query, one group and ten rows per person, order amounts
/// bounded to [0, 200000] fen).
fn spec(mode: ReleaseMode) -> String {
    let mode = match mode {
        ReleaseMode::Dp => "dp",
        ReleaseMode::Threshold => "threshold",
    };
    let privacy = format!(
        "[party.privacy]\nmode = \"{mode}\"\nmin_people = 50\nepsilon = 0.5\nbudget = 10.0\nmax_groups_per_person = 1\nmax_rows_per_person = 10\n"
    );
    format!(
        r#"[collaboration]
id = "lift-coverage"
description = "Simulated holdout studies"
host = "retail"

[[party]]
name = "social"
description = "Media"
{privacy}
[[party.table]]
name = "users"
path = "social/users.parquet"
record_id = "user_id"

[[party.table.identifier]]
column = "phone"
type = "phone"

[[party.table]]
name = "campaigns"
path = "social/campaigns.parquet"
dimensions = ["campaign_id"]
measures = ["spend_fen"]

[[party.table]]
name = "holdout"
path = "social/holdout.parquet"
record_id = "user_id"
dimensions = ["campaign_id", "grp"]

[[party]]
name = "retail"
description = "Retailer"
{privacy}
[[party.table]]
name = "users"
path = "retail/users.parquet"
record_id = "member_id"

[[party.table.identifier]]
column = "phone"
type = "phone"

[[party.table]]
name = "orders"
path = "retail/orders.parquet"
record_id = "member_id"
dimensions = ["brand"]
measures = ["amount_fen"]
bounds = {{ amount_fen = [0, 200000] }}
timestamps = ["ts"]
"#
    )
}

/// The true parameters and rows of one study.
struct Draw {
    test: u64,
    control: u64,
    control_rate: f64,
    effect: f64,
    value_permille: i64,
    batch: RecordBatch,
}

fn arrow(e: jingteng_engine::datafusion::arrow::error::ArrowError) -> Error {
    Error::Engine(e.into())
}

fn study_seed(seed: u64, index: u32) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(index).wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// Mean GMV of a converter, fen, with `permille` extra.
fn basket_mean(permille: i64) -> f64 {
    let prices: i64 = PRICES_YUAN.iter().sum();
    prices as f64 / PRICES_YUAN.len() as f64 * 100.0 * 1.5 * (1000 + permille) as f64 / 1000.0
}

fn draw(settings: &CoverageSettings, index: u32) -> Result<Draw> {
    let mut rng = SeededRng::new(study_seed(settings.seed, index));
    let (lo, hi) = settings.people;
    let total = ((lo as f64).ln() + rng.uniform() * ((hi as f64).ln() - (lo as f64).ln()))
        .exp()
        .round() as u64;
    let share = [0.1, 0.2, 0.3, 0.5][rng.below(4) as usize];
    let control = ((total as f64) * share).round() as u64;
    let test = total - control;
    let control_rate = 0.02 + 0.10 * rng.uniform();
    let effect = EFFECTS[index as usize % EFFECTS.len()];
    let value_permille =
        VALUE_EFFECTS_PERMILLE[(index as usize / EFFECTS.len()) % VALUE_EFFECTS_PERMILLE.len()];
    let n = usize::try_from(total).map_err(|_| Error::Input("too many people".into()))?;
    let mut person = Vec::with_capacity(n);
    let mut grp = Vec::with_capacity(n);
    let mut converted = Vec::with_capacity(n);
    let mut value = Vec::with_capacity(n);
    for i in 0..total {
        let is_test = i < test;
        let p = if is_test {
            control_rate * (1.0 + effect)
        } else {
            control_rate
        };
        let buys = rng.uniform() < p;
        let v = if buys {
            let price = PRICES_YUAN[rng.below(PRICES_YUAN.len() as u64) as usize];
            let u = rng.uniform();
            let qty = if u < 0.6 {
                1
            } else if u < 0.9 {
                2
            } else {
                3
            };
            let extra = if is_test { value_permille } else { 0 };
            price * qty * (1000 + extra) / 10
        } else {
            0
        };
        person.push(i + 1);
        grp.push(if is_test { "test" } else { "control" });
        converted.push(i64::from(buys));
        value.push(v);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("person", DataType::UInt64, false),
        Field::new("campaign_id", DataType::Utf8, false),
        Field::new("grp", DataType::Utf8, false),
        Field::new("converted", DataType::Int64, false),
        Field::new("value_fen", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from(person)),
        Arc::new(StringArray::from(vec![CAMPAIGN; n])),
        Arc::new(StringArray::from(grp)),
        Arc::new(Int64Array::from(converted)),
        Arc::new(Int64Array::from(value)),
    ];
    Ok(Draw {
        test,
        control,
        control_rate,
        effect,
        value_permille,
        batch: RecordBatch::try_new(schema, columns).map_err(arrow)?,
    })
}

/// Simulates study `index`: draws its rows, releases them through a fresh engine and
/// the lift code, and checks each interval against the truth.
pub async fn coverage_study(settings: &CoverageSettings, index: u32) -> Result<Study> {
    let d = draw(settings, index)?;
    let collab = jingteng_psi::Collaboration::parse(&spec(settings.mode))
        .map_err(|e| Error::Internal(format!("the simulation's spec: {e}")))?;
    let mut engine = Engine::for_checking(&collab).await?;
    let ctx = engine.session();
    let schema = d.batch.schema();
    ctx.register_table(
        RAW,
        Arc::new(MemTable::try_new(schema, vec![vec![d.batch]])?),
    )?;
    let campaigns = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("campaign_id", DataType::Utf8, true),
            Field::new("spend_fen", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec![CAMPAIGN])),
            Arc::new(Int64Array::from(vec![SPEND_FEN])),
        ],
    )
    .map_err(arrow)?;
    let reference = TableReference::partial("social", "campaigns");
    ctx.deregister_table(reference.clone())?;
    ctx.register_table(
        reference,
        Arc::new(MemTable::try_new(
            campaigns.schema(),
            vec![vec![campaigns]],
        )?),
    )?;
    let sources = Sources::default();
    register_outcomes_from(
        &mut engine,
        &format!("SELECT person, campaign_id, grp, converted, value_fen FROM {RAW}"),
        &sources,
    )
    .await?;
    let lift = LiftSettings {
        bootstrap_draws: settings.bootstrap_draws,
        bootstrap_seed: study_seed(settings.seed, index) ^ 0x5eed,
        ..Default::default()
    };
    let (campaigns, _) = lift_released(&engine, &lift, &sources, None, "simulation").await?;
    let c = campaigns
        .into_iter()
        .find(|c| c.campaign_id == CAMPAIGN)
        .ok_or_else(|| Error::Internal("the simulated campaign is missing".into()))?;

    let p_c = d.control_rate;
    let p_t = p_c * (1.0 + d.effect);
    let per_person = p_t * basket_mean(d.value_permille) - p_c * basket_mean(0);
    let total = d.test as f64 * per_person;
    let truth = [
        p_t - p_c,
        d.effect,
        per_person,
        total,
        total / SPEND_FEN as f64,
    ];
    let intervals = [
        c.itt_difference,
        c.relative_lift,
        c.incremental_gmv_per_person,
        c.incremental_gmv,
        c.iroas_interval,
    ];
    let mut covered = [None; 5];
    for (k, i) in intervals.iter().enumerate() {
        covered[k] = i.map(|i| i.low <= truth[k] && truth[k] <= i.high);
    }
    Ok(Study {
        index,
        test_people: d.test,
        control_people: d.control,
        control_rate: p_c,
        relative_effect: d.effect,
        value_effect: d.value_permille as f64 / 1000.0,
        truth,
        intervals,
        covered,
    })
}

/// Coverage over `studies`.
pub fn summarize(settings: &CoverageSettings, studies: &[Study]) -> CoverageReport {
    let confidence = LiftSettings::default().confidence;
    let z = z_two_sided(0.95);
    let rate = |covered: u32, n: u32| {
        if n == 0 {
            f64::NAN
        } else {
            f64::from(covered) / f64::from(n)
        }
    };
    let intervals = INTERVALS
        .iter()
        .enumerate()
        .map(|(k, (name, method))| {
            let given = studies.iter().filter(|s| s.covered[k].is_some()).count() as u32;
            let covered = studies
                .iter()
                .filter(|s| s.covered[k] == Some(true))
                .count() as u32;
            let (lo, hi) = Proportion::exact(u64::from(covered), u64::from(given)).wilson(z);
            IntervalCoverage {
                interval: (*name).into(),
                method: (*method).into(),
                studies: given,
                covered,
                missing: studies.len() as u32 - given,
                coverage: rate(covered, given),
                coverage_low: lo,
                coverage_high: hi,
            }
        })
        .collect();
    let by_effect = EFFECTS
        .iter()
        .map(|e| {
            let of: Vec<&Study> = studies.iter().filter(|s| s.relative_effect == *e).collect();
            let cov = |k: usize| {
                let given = of.iter().filter(|s| s.covered[k].is_some()).count() as u32;
                let covered = of.iter().filter(|s| s.covered[k] == Some(true)).count() as u32;
                rate(covered, given)
            };
            EffectCoverage {
                relative_effect: *e,
                studies: of.len() as u32,
                coverage: [cov(0), cov(1), cov(3)],
            }
        })
        .collect();
    CoverageReport {
        settings: *settings,
        confidence,
        intervals,
        by_effect,
        model: format!(
            "simulated at the level of the lift's input table (one row per linked person: group, converted, GMV), not as whole synthetic worlds; {}–{} people per study (log-uniform), 10/20/30/50% held out, control conversion rate 2–12%, relative effect on conversion {:?} in turn, GMV per converter +0% or +10% in the test group, a basket of 1–3 × one of 7 prices (¥49–¥599); released through an in-memory engine in {} mode with the synthetic world's rules",
            settings.people.0,
            settings.people.1,
            EFFECTS,
            match settings.mode {
                ReleaseMode::Dp => "DP",
                ReleaseMode::Threshold => "threshold",
            }
        ),
    }
}

/// Runs `settings.studies` studies one after another and summarises them (the CLI runs
/// them on several threads with [`coverage_study`] and [`summarize`]).
pub async fn lift_coverage(settings: &CoverageSettings) -> Result<(CoverageReport, Vec<Study>)> {
    let mut studies = Vec::with_capacity(settings.studies as usize);
    for i in 0..settings.studies {
        studies.push(coverage_study(settings, i).await?);
    }
    Ok((summarize(settings, &studies), studies))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_seeded_and_have_the_stated_effect() {
        let s = CoverageSettings {
            people: (50_000, 50_000),
            ..Default::default()
        };
        let a = draw(&s, 4).unwrap();
        let b = draw(&s, 4).unwrap();
        assert_eq!(a.batch, b.batch);
        assert_eq!(a.test + a.control, 50_000);
        assert_eq!(a.effect, EFFECTS[4]);
        // Conversion rates near the truth (4σ).
        let conv = a
            .batch
            .column(3)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        let t: i64 = (0..a.test as usize).map(|i| conv.value(i)).sum();
        let p = a.control_rate * (1.0 + a.effect);
        let sd = (p * (1.0 - p) * a.test as f64).sqrt();
        assert!((t as f64 - p * a.test as f64).abs() < 4.0 * sd);
        // The dearest basket stays within the order amount's bound.
        assert!(PRICES_YUAN.iter().max().unwrap() * 3 * 1100 / 10 <= 200_000);
    }

    #[test]
    fn the_spec_parses() {
        for m in [ReleaseMode::Dp, ReleaseMode::Threshold] {
            jingteng_psi::Collaboration::parse(&spec(m)).unwrap();
        }
    }
}

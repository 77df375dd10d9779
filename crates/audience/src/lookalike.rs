//! Look-alike expansion: find the media party's users who look most like a seed
//! audience, on the features the media party allowed.
//!
//! - **Features** (one row per user of the media party's table with one row per
//!   person): every dimension of that table one-hot (`age_band=25-34`), and for each
//!   of the party's other tables about people the log of 1 + the user's rows, overall
//!   and per value of each dimension (`exposures.campaign_id=C007`). Dimensions with
//!   more than [`MAX_VALUES`] values are left out (they would be ids in disguise).
//!   Only the media party's own allowed columns are used: the model is trained at the
//!   host on what that party contributed, and nothing else party's enters the score.
//! - **Model**: binary logistic regression with L2 penalty
//!   ([`linfa_logistic::LogisticRegression`], L-BFGS), the seed's users as positives and
//!   a random sample of the other users (up to [`NEGATIVES_PER_POSITIVE`] per
//!   positive) as negatives.
//! - **Held-out precision**: a share of the seed (default 20%) is held out; a model
//!   trained on the rest ranks the held-out seed users among the users it did not
//!   train on, and the report gives precision, recall and lift at the same share of
//!   that pool as N is of all non-seed users. Unlabelled users who would belong to the
//!   seed count as misses, so the precision is a floor.
//! - **Selection**: a model trained on the whole seed scores every non-seed user;
//!   the top N join the audience.

use std::collections::{BTreeMap, HashMap, HashSet};

use jingteng_engine::Policy;
use jingteng_engine::datafusion::arrow::array::{Array, AsArray};
use jingteng_engine::datafusion::arrow::compute::cast;
use jingteng_engine::datafusion::arrow::datatypes::{DataType, Int64Type, UInt64Type};
use jingteng_engine::datafusion::prelude::SessionContext;
use jingteng_engine::policy::Role;
use linfa::prelude::Fit;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use crate::{Error, Result};

/// Dimensions with more distinct values than this are not used as features.
pub const MAX_VALUES: usize = 64;
/// Negatives sampled per positive when training.
pub const NEGATIVES_PER_POSITIVE: usize = 4;

/// Look-alike settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LookalikeSettings {
    /// Media users to add.
    pub size: u64,
    /// Share of the seed held out to measure precision.
    pub holdout: f64,
    /// Random seed of the split and sampling.
    pub seed: u64,
}

/// What the look-alike did and how well it is expected to do (no exact sizes).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LookalikeReport {
    /// Media users asked for.
    pub size: u64,
    /// Media users added (fewer when there were fewer non-seed users).
    pub added: u64,
    /// Features the model used.
    pub features: Vec<String>,
    /// Share of the seed held out.
    pub holdout: f64,
    /// Held-out evaluation: the top this share of the evaluation pool was taken.
    pub eval_share: f64,
    /// Share of the top that are held-out seed users (a floor on precision).
    pub precision: f64,
    /// Share of the pool that are held-out seed users (what random picking gets).
    pub base_rate: f64,
    /// precision / base rate.
    pub lift: f64,
    /// Share of the held-out seed found in the top.
    pub recall: f64,
}

/// The media party's users and their features.
pub(crate) struct Features {
    pub(crate) persons: Vec<u64>,
    pub(crate) names: Vec<String>,
    pub(crate) x: Array2<f64>,
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

async fn batches(
    ctx: &SessionContext,
    sql: &str,
) -> Result<Vec<jingteng_engine::datafusion::arrow::array::RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Reads the features of every user of `party` from the joined view.
pub(crate) async fn features(
    ctx: &SessionContext,
    policy: &Policy,
    party: &str,
) -> Result<Features> {
    let tables: Vec<_> = policy
        .tables
        .values()
        .filter(|t| t.party == party && t.about_people)
        .collect();
    let identity = tables
        .iter()
        .find(|t| t.one_row_per_person)
        .ok_or_else(|| Error::Lookalike(format!("party {party:?} has no users table")))?;
    let id_name = format!("{}.{}", q(&identity.party), q(&identity.table));
    let dims: Vec<&String> = identity
        .columns
        .iter()
        .filter(|(_, r)| r.role == Role::Dimension)
        .map(|(c, _)| c)
        .collect();
    // Users and their one-hot dimensions.
    let mut select = vec!["person".to_string()];
    select.extend(dims.iter().map(|d| format!("CAST({} AS VARCHAR)", q(d))));
    let users = batches(ctx, &format!("SELECT {} FROM {id_name}", select.join(", "))).await?;
    let mut persons = Vec::new();
    let mut values: Vec<Vec<Option<String>>> = vec![Vec::new(); dims.len()];
    for b in &users {
        let p = cast(b.column(0), &DataType::UInt64)?;
        let p = p.as_primitive::<UInt64Type>();
        for i in 0..p.len() {
            persons.push(p.value(i));
        }
        for (d, slot) in values.iter_mut().enumerate() {
            let col = cast(b.column(d + 1), &DataType::Utf8)?;
            let col = col.as_string::<i32>();
            for i in 0..col.len() {
                slot.push(col.is_valid(i).then(|| col.value(i).to_string()));
            }
        }
    }
    let index: HashMap<u64, usize> = persons.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let mut names: Vec<String> = Vec::new();
    let mut cells: Vec<(usize, usize, f64)> = Vec::new();
    for (d, dim) in dims.iter().enumerate() {
        let distinct: BTreeMap<&str, ()> = values[d]
            .iter()
            .flatten()
            .map(|v| (v.as_str(), ()))
            .collect();
        if distinct.len() > MAX_VALUES {
            continue;
        }
        let base = names.len();
        let pos: HashMap<&str, usize> = distinct
            .keys()
            .enumerate()
            .map(|(i, v)| (*v, base + i))
            .collect();
        names.extend(
            distinct
                .keys()
                .map(|v| format!("{}.{dim}={v}", identity.table)),
        );
        for (row, v) in values[d].iter().enumerate() {
            if let Some(c) = v.as_deref().and_then(|v| pos.get(v)) {
                cells.push((row, *c, 1.0));
            }
        }
    }
    // Activity in the party's other tables.
    for t in tables.iter().filter(|t| !t.one_row_per_person) {
        let name = format!("{}.{}", q(&t.party), q(&t.table));
        let col = names.len();
        names.push(format!("{}.rows", t.table));
        for b in batches(
            ctx,
            &format!("SELECT person, COUNT(*) FROM {name} GROUP BY person"),
        )
        .await?
        {
            add_counts(&b, &index, |_| Some(col), &mut cells)?;
        }
        for (dim, rule) in &t.columns {
            if rule.role != Role::Dimension {
                continue;
            }
            let vals = batches(
                ctx,
                &format!(
                    "SELECT DISTINCT CAST({} AS VARCHAR) FROM {name} WHERE {} IS NOT NULL",
                    q(dim),
                    q(dim)
                ),
            )
            .await?;
            let mut distinct: Vec<String> = Vec::new();
            for b in &vals {
                let c = cast(b.column(0), &DataType::Utf8)?;
                let c = c.as_string::<i32>();
                distinct.extend(
                    (0..c.len())
                        .filter(|i| c.is_valid(*i))
                        .map(|i| c.value(i).to_string()),
                );
            }
            if distinct.len() > MAX_VALUES {
                continue;
            }
            distinct.sort();
            let base = names.len();
            let pos: HashMap<String, usize> = distinct
                .iter()
                .enumerate()
                .map(|(i, v)| (v.clone(), base + i))
                .collect();
            names.extend(distinct.iter().map(|v| format!("{}.{dim}={v}", t.table)));
            let sql = format!(
                "SELECT person, COUNT(*), CAST({c} AS VARCHAR) FROM {name} WHERE {c} IS NOT NULL GROUP BY person, CAST({c} AS VARCHAR)",
                c = q(dim)
            );
            for b in batches(ctx, &sql).await? {
                let v = cast(b.column(2), &DataType::Utf8)?;
                let v = v.as_string::<i32>().clone();
                add_counts(&b, &index, |i| pos.get(v.value(i)).copied(), &mut cells)?;
            }
        }
    }
    let mut x = Array2::<f64>::zeros((persons.len(), names.len()));
    for (r, c, v) in cells {
        x[[r, c]] = v;
    }
    Ok(Features { persons, names, x })
}

fn add_counts(
    b: &jingteng_engine::datafusion::arrow::array::RecordBatch,
    index: &HashMap<u64, usize>,
    column_of: impl Fn(usize) -> Option<usize>,
    cells: &mut Vec<(usize, usize, f64)>,
) -> Result<()> {
    let p = cast(b.column(0), &DataType::UInt64)?;
    let p = p.as_primitive::<UInt64Type>();
    let n = cast(b.column(1), &DataType::Int64)?;
    let n = n.as_primitive::<Int64Type>();
    for i in 0..b.num_rows() {
        if let (Some(row), Some(col)) = (index.get(&p.value(i)), column_of(i)) {
            cells.push((*row, col, (1.0 + n.value(i) as f64).ln()));
        }
    }
    Ok(())
}

/// Trains on `pos` (rows of positives) against a sample of `candidates` (rows of
/// non-seed users); returns the probability of "seed" for `score` rows and the rows
/// sampled as negatives.
#[allow(clippy::type_complexity)]
fn train_and_score<'a>(
    x: &'a Array2<f64>,
    pos: &[usize],
    candidates: &[usize],
    rng: &mut ChaCha20Rng,
) -> Result<(Vec<usize>, Box<dyn Fn(&[usize]) -> Vec<f64> + 'a>)> {
    let mut negatives = candidates.to_vec();
    negatives.shuffle(rng);
    negatives.truncate(pos.len().saturating_mul(NEGATIVES_PER_POSITIVE));
    if negatives.is_empty() || pos.is_empty() {
        return Err(Error::Lookalike(
            "no users outside the seed to learn from".into(),
        ));
    }
    let rows: Vec<usize> = pos.iter().chain(&negatives).copied().collect();
    let xt = x.select(ndarray::Axis(0), &rows);
    let y: Array1<bool> = rows
        .iter()
        .enumerate()
        .map(|(i, _)| i < pos.len())
        .collect();
    let data = linfa::Dataset::new(xt, y);
    let model = LogisticRegression::default()
        .alpha(0.1)
        .max_iterations(150)
        .fit(&data)
        .map_err(|e| Error::Lookalike(format!("training failed: {e}")))?;
    let seed_is_pos = model.labels().pos.class;
    let score = move |rows: &[usize]| {
        let xs = x.select(ndarray::Axis(0), rows);
        model
            .predict_probabilities(&xs)
            .iter()
            .map(|p| if seed_is_pos { *p } else { 1.0 - *p })
            .collect()
    };
    Ok((negatives, Box::new(score)))
}

/// Rows of `rows` sorted by descending score (ties by row, for determinism).
fn ranked(rows: &[usize], scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|a, b| {
        scores[*b]
            .total_cmp(&scores[*a])
            .then(rows[*a].cmp(&rows[*b]))
    });
    order.into_iter().map(|i| rows[i]).collect()
}

/// Expands `seed` (people of the view) with the `settings.size` users of `party` the
/// model ranks highest; returns the added people and the report.
pub(crate) async fn expand(
    ctx: &SessionContext,
    policy: &Policy,
    party: &str,
    seed: &HashSet<u64>,
    settings: &LookalikeSettings,
) -> Result<(Vec<u64>, LookalikeReport)> {
    let f = features(ctx, policy, party).await?;
    if f.names.is_empty() {
        return Err(Error::Lookalike(format!(
            "party {party:?} allows no column a model could learn from (dimensions of its users table or tables about its users)"
        )));
    }
    let mut rng = ChaCha20Rng::seed_from_u64(settings.seed);
    let (mut seed_rows, others): (Vec<usize>, Vec<usize>) =
        (0..f.persons.len()).partition(|r| seed.contains(&f.persons[*r]));
    if others.is_empty() {
        return Err(Error::Lookalike(format!(
            "every user of {party} is already in the seed; there is no one to add"
        )));
    }
    seed_rows.shuffle(&mut rng);
    let held = ((seed_rows.len() as f64) * settings.holdout).round() as usize;
    let (held_out, train) = seed_rows.split_at(held.clamp(1, seed_rows.len().saturating_sub(1)));
    let share = (settings.size as f64 / others.len() as f64).min(1.0);
    // Held-out evaluation.
    let (negatives, score) = train_and_score(&f.x, train, &others, &mut rng)?;
    let used: HashSet<usize> = negatives.into_iter().collect();
    let pool: Vec<usize> = held_out
        .iter()
        .copied()
        .chain(others.iter().copied().filter(|r| !used.contains(r)))
        .collect();
    let scores = score(&pool);
    drop(score);
    let k = ((pool.len() as f64 * share).round() as usize).clamp(1, pool.len());
    let held_set: HashSet<usize> = held_out.iter().copied().collect();
    let hits = ranked(&pool, &scores)
        .into_iter()
        .take(k)
        .filter(|r| held_set.contains(r))
        .count();
    let precision = hits as f64 / k as f64;
    let base_rate = held_out.len() as f64 / pool.len() as f64;
    // The model on the whole seed picks the users.
    let (_, score) = train_and_score(&f.x, &seed_rows, &others, &mut rng)?;
    let scores = score(&others);
    let take = (settings.size as usize).min(others.len());
    let added: Vec<u64> = ranked(&others, &scores)
        .into_iter()
        .take(take)
        .map(|r| f.persons[r])
        .collect();
    let report = LookalikeReport {
        size: settings.size,
        added: added.len() as u64,
        features: f.names,
        holdout: settings.holdout,
        eval_share: k as f64 / pool.len() as f64,
        precision,
        base_rate,
        lift: if base_rate > 0.0 {
            precision / base_rate
        } else {
            0.0
        },
        recall: hits as f64 / held_out.len().max(1) as f64,
    };
    Ok((added, report))
}

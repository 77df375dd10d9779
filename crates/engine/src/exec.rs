//! Running an approved plan: the release aggregate is computed on its own, released
//! (small groups suppressed, or differential privacy), and the rest of the query
//! (ORDER BY, LIMIT, arithmetic on the aggregates) runs over the released rows only.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, UInt32Array,
    UInt64Array,
};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef, UInt64Type};
use datafusion::catalog::MemTable;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, HashMap as FastMap};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{
    Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, cast as cast_expr, lit, when,
};
use datafusion::prelude::SessionContext;
use jingteng_psi::ReleaseMode;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::check::{ApprovedPlan, DpStat, Refusal, Release};
use crate::dp;
use crate::people::people_at_least;
use crate::per_person::{MAX_STATS, Stat, per_person};
use crate::{Error, Result};

/// How the answer was released.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReleaseNote {
    /// `threshold`, `dp`, or `public` (no data about people was read).
    pub mode: String,
    /// Threshold mode: people every row covers at least.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_people: Option<u64>,
    /// Threshold mode: groups left out for covering too few people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_rows: Option<u64>,
    /// DP mode: ε this answer cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// DP mode: δ of the group selection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// DP mode: groups appear only when their noisy people count clears this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection_threshold: Option<i64>,
    /// DP mode: noise per output column of the release aggregate.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub noise: Vec<ColumnNoise>,
}

/// The noise on one column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnNoise {
    /// Column of the release aggregate.
    pub column: String,
    /// Scale of the discrete Laplace noise.
    pub scale: f64,
    /// Half-width of its 95% interval (absent for averages, which divide two noisy
    /// values).
    pub bound95: Option<f64>,
}

/// Runs an approved plan.
pub(crate) async fn run(
    ctx: &SessionContext,
    approved: &ApprovedPlan,
) -> Result<(Vec<RecordBatch>, ReleaseNote)> {
    let Some(release) = &approved.release else {
        let batches = ctx
            .execute_logical_plan(approved.plan.clone())
            .await?
            .collect()
            .await?;
        return Ok((
            batches,
            ReleaseNote {
                mode: "public".into(),
                ..Default::default()
            },
        ));
    };
    let (released, note) = match approved.privacy.mode {
        ReleaseMode::Threshold => threshold(ctx, release, approved.privacy.min_people).await?,
        ReleaseMode::Dp => differential(ctx, release, approved).await?,
    };
    // The released rows are scanned under positional names (the aggregate may output
    // two columns of one name from different tables) and renamed back to the
    // aggregate's qualified names, so the rest of the plan reads them unchanged.
    let positional: SchemaRef = Arc::new(Schema::new(
        release
            .aggregate
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| f.as_ref().clone().with_name(format!("c{i}")))
            .collect::<Vec<_>>(),
    ));
    let released = released
        .into_iter()
        .map(|b| RecordBatch::try_new(positional.clone(), b.columns().to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mem = MemTable::try_new(positional, vec![released])?;
    let exprs: Vec<Expr> = release
        .aggregate
        .schema
        .iter()
        .enumerate()
        .map(|(i, (q, f))| {
            Expr::Column(Column::new(Some("__jt_released"), format!("c{i}")))
                .alias_qualified(q.cloned(), f.name())
        })
        .collect();
    let replacement =
        LogicalPlanBuilder::scan("__jt_released", provider_as_source(Arc::new(mem)), None)?
            .project(exprs)?
            .build()?;
    let target = LogicalPlan::Aggregate(release.aggregate.clone());
    let plan = approved
        .plan
        .clone()
        .transform_up(|n| {
            Ok(if n == target {
                Transformed::yes(replacement.clone())
            } else {
                Transformed::no(n)
            })
        })?
        .data;
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    let mut note = note;
    // Name the noise after the output columns the user sees (`AS people`), where an
    // output column is a released column passed through unchanged.
    let out = approved.plan.schema();
    for (i, f) in out.fields().iter().enumerate() {
        if let Some(j) = trace(&approved.plan, i, &target) {
            let agg_name = release.aggregate.schema.field(j).name();
            for n in note.noise.iter_mut().filter(|n| &n.column == agg_name) {
                n.column = f.name().clone();
            }
        }
    }
    Ok((batches, note))
}

/// The column of `target` that output column `i` of `plan` passes through unchanged.
fn trace(plan: &LogicalPlan, i: usize, target: &LogicalPlan) -> Option<usize> {
    if plan == target {
        return Some(i);
    }
    match plan {
        LogicalPlan::Projection(p) => {
            let Expr::Column(c) = p.expr.get(i)?.clone().unalias_nested().data else {
                return None;
            };
            let j = p.input.schema().index_of_column(&c).ok()?;
            trace(&p.input, j, target)
        }
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) | LogicalPlan::SubqueryAlias(_) => {
            trace(plan.inputs().first()?, i, target)
        }
        _ => None,
    }
}

fn int64(a: &ArrayRef) -> Result<Int64Array> {
    let c = cast(a, &DataType::Int64)?;
    c.as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| Error::Internal("cast to Int64".into()))
}

async fn threshold(
    ctx: &SessionContext,
    release: &Release,
    k: u64,
) -> Result<(Vec<RecordBatch>, ReleaseNote)> {
    let agg = &release.aggregate;
    let schema: SchemaRef = Arc::new(agg.schema.as_arrow().clone());
    let n = schema.fields().len();
    // The query may already count the people of each group; then that count is the
    // one the threshold needs, and nothing is added. Otherwise the people are counted
    // only up to k (`people_at_least`), which is all the threshold compares.
    let person = Expr::Column(release.person.clone());
    let existing = agg.aggr_expr.iter().position(|e| {
        matches!(e.clone().unalias_nested().data, Expr::AggregateFunction(af)
            if af.func.name().eq_ignore_ascii_case("count")
                && af.params.distinct
                && af.params.filter.is_none()
                && af.params.args.len() == 1
                && af.params.args[0] == person)
    });
    let mut aggr = agg.aggr_expr.clone();
    let people_col = match existing {
        Some(i) => agg.group_expr.len() + i,
        None => {
            aggr.push(people_at_least(person, k).alias("__jt_people"));
            n
        }
    };
    let plan = LogicalPlanBuilder::from(agg.input.as_ref().clone())
        .aggregate(agg.group_expr.clone(), aggr)?
        .build()?;
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    let mut suppressed = 0u64;
    let mut out = Vec::new();
    for b in batches {
        let people = int64(b.column(people_col))?;
        let keep: BooleanArray = people
            .iter()
            .map(|p| Some(p.is_some_and(|p| p >= k as i64)))
            .collect();
        suppressed += (b.num_rows() - keep.true_count()) as u64;
        let kept = filter_record_batch(&b, &keep)?;
        let cols: Vec<ArrayRef> = kept.columns()[..n].to_vec();
        out.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    Ok((
        out,
        ReleaseNote {
            mode: "threshold".into(),
            min_people: Some(k),
            suppressed_rows: Some(suppressed),
            ..Default::default()
        },
    ))
}

/// The bounding stage's entries: per (group, person), the group's index, the person
/// and the person's statistics there.
struct Part {
    group: Vec<u32>,
    person: UInt64Array,
    stats: Vec<Int64Array>,
}

/// A uniformly random `m` of each person's entries (all of them when the person has at
/// most `m`): reservoir sampling in one pass, with a CSPRNG seeded from the operating
/// system. The first pick of every person is kept in one flat vector; only people in
/// more than one group hold more.
fn sample_groups(part: &Part, m: usize) -> Result<Vec<u32>> {
    if m == 0 {
        return Ok(Vec::new());
    }
    const EMPTY: u32 = u32::MAX;
    let mut rng = jingteng_match::secure_rng()?;
    let mut slot: FastMap<u64, u32> = FastMap::new();
    let mut seen: Vec<u32> = Vec::new();
    let mut first: Vec<u32> = Vec::new();
    let mut more: FastMap<u32, Vec<u32>> = FastMap::new();
    for r in (0..part.person.len()).filter(|r| part.person.is_valid(*r)) {
        let s = *slot.entry(part.person.value(r)).or_insert_with(|| {
            seen.push(0);
            first.push(EMPTY);
            (seen.len() - 1) as u32
        });
        seen[s as usize] += 1;
        let n = seen[s as usize] as usize;
        let j = if n <= m {
            n - 1
        } else {
            rng.random_range(0..n)
        };
        let pick = r as u32;
        match j {
            0 => first[s as usize] = pick,
            j if j < m => {
                let v = more.entry(s).or_default();
                if j > v.len() {
                    v.push(pick);
                } else {
                    v[j - 1] = pick;
                }
            }
            _ => {}
        }
    }
    Ok(first
        .into_iter()
        .filter(|p| *p != EMPTY)
        .chain(more.into_values().flatten())
        .collect())
}

/// One per-person statistic computed in the bounding stage.
#[derive(Clone, Copy)]
enum Stage {
    Count,
    Sum(i64, i64),
}

async fn differential(
    ctx: &SessionContext,
    release: &Release,
    approved: &ApprovedPlan,
) -> Result<(Vec<RecordBatch>, ReleaseNote)> {
    let p = approved.privacy;
    let agg: &Aggregate = &release.aggregate;
    let ng = agg.group_expr.len();
    let out_schema = agg.schema.as_arrow().clone();
    // Stage 1: per group, every person in it with their own raw statistics.
    let mut stages: Vec<Stage> = Vec::new();
    let mut args: Vec<(Stat, Expr)> = Vec::new();
    let clamp = |e: &Expr, lo: i64, hi: i64| -> Result<Expr> {
        let v = cast_expr(e.clone(), DataType::Int64);
        Ok(when(v.clone().lt(lit(lo)), lit(lo))
            .when(v.clone().gt(lit(hi)), lit(hi))
            .otherwise(v)?)
    };
    for s in &release.dp {
        match s {
            DpStat::People => {}
            DpStat::Count(e) => {
                stages.push(Stage::Count);
                args.push((Stat::Count, e.clone().unwrap_or(lit(1i64))));
            }
            DpStat::Sum(e, (lo, hi)) => {
                stages.push(Stage::Sum(*lo, *hi));
                args.push((Stat::Sum, clamp(e, *lo, *hi)?));
            }
            DpStat::Avg(e, (lo, hi)) => {
                stages.push(Stage::Sum(*lo, *hi));
                args.push((Stat::Sum, clamp(e, *lo, *hi)?));
                stages.push(Stage::Count);
                args.push((Stat::Count, e.clone()));
            }
        }
    }
    if args.len() > MAX_STATS {
        return Err(Error::Refused(Refusal {
            rule: "resource-limit",
            message: format!(
                "this release computes {} statistics per group; at most {MAX_STATS} are allowed",
                args.len()
            ),
            hint: "ask for fewer aggregates in one query (AVG counts twice)".into(),
        }));
    }
    let person = Expr::Column(release.person.clone());
    let plan = LogicalPlanBuilder::from(agg.input.as_ref().clone())
        .aggregate(
            agg.group_expr.clone(),
            vec![per_person(person, args).alias("__jt_people")],
        )?
        .build()?;
    let schema = Arc::new(plan.schema().as_arrow().clone());
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    // One row per group (a global aggregate, without GROUP BY, has one).
    let groups = concat_batches(&schema, &batches)?;
    let ngroups = groups.num_rows();
    let value = groups.column(ng).as_struct();
    let people_lists = value.column(0).as_list::<i32>();
    let offsets = people_lists.value_offsets();
    let (first, last) = (offsets[0] as usize, offsets[ngroups] as usize);
    let part = Part {
        group: (0..ngroups)
            .flat_map(|g| std::iter::repeat_n(g as u32, (offsets[g + 1] - offsets[g]) as usize))
            .collect(),
        person: people_lists
            .values()
            .slice(first, last - first)
            .as_primitive::<UInt64Type>()
            .clone(),
        stats: (0..stages.len())
            .map(|i| {
                value
                    .column(1 + i)
                    .as_list::<i32>()
                    .values()
                    .slice(first, last - first)
                    .as_primitive::<Int64Type>()
                    .clone()
            })
            .collect(),
    };

    // Contribution bounding: at most `max_groups_per_person` groups per person, chosen
    // at random, and at most `max_rows_per_person` rows' worth per group.
    let max_groups = p.max_groups_per_person as usize;
    let rows_cap = i64::from(p.max_rows_per_person);
    let mut people = vec![0i64; ngroups];
    let mut totals = vec![vec![0i128; ngroups]; stages.len()];
    let mut add = |r: usize| {
        let g = part.group[r] as usize;
        people[g] += 1;
        for (si, stage) in stages.iter().enumerate() {
            let a = &part.stats[si];
            let x = if a.is_null(r) { 0 } else { a.value(r) };
            let bounded = match stage {
                Stage::Count => x.clamp(0, rows_cap),
                Stage::Sum(lo, hi) => x.clamp(
                    lo.saturating_mul(rows_cap).min(0),
                    hi.saturating_mul(rows_cap).max(0),
                ),
            };
            totals[si][g] += i128::from(bounded);
        }
    };
    if ngroups <= max_groups {
        // Nobody can be in more groups than the cap: every (group, person) row counts.
        (0..part.person.len()).for_each(&mut add);
    } else {
        for r in sample_groups(&part, max_groups)? {
            add(r as usize);
        }
    }

    // Noise: ε split evenly over the people counts (group selection) and each stat.
    let parts = 1 + stages.len();
    let eps_part = p.epsilon / parts as f64;
    let g = f64::from(p.max_groups_per_person);
    let sel_scale = g / eps_part;
    let threshold = dp::selection_threshold(sel_scale, p.max_groups_per_person)?;
    let counts: HashMap<u32, i64> = people
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u32, *n))
        .collect();
    let selected = dp::select_groups(&counts, sel_scale, threshold)?;
    let mut order: Vec<u32> = selected.keys().copied().collect();
    order.sort_unstable();
    let mut noisy_stats: Vec<Vec<i64>> = Vec::new();
    let mut stat_scales: Vec<f64> = Vec::new();
    for (si, stage) in stages.iter().enumerate() {
        let sens = match stage {
            Stage::Count => rows_cap as f64,
            Stage::Sum(lo, hi) => {
                (rows_cap as f64) * (lo.unsigned_abs().max(hi.unsigned_abs()) as f64)
            }
        } * g;
        let scale = sens / eps_part;
        let values: Vec<i64> = order
            .iter()
            .map(|gi| {
                let t = totals[si][*gi as usize];
                t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
            })
            .collect();
        noisy_stats.push(dp::laplace(&values, scale)?);
        stat_scales.push(scale);
    }

    // Assemble the released rows in the aggregate's schema.
    let picked = UInt32Array::from(order.clone());
    let mut columns: Vec<ArrayRef> = (0..ng)
        .map(|i| {
            Ok(cast(
                &take(groups.column(i), &picked, None)?,
                out_schema.field(i).data_type(),
            )?)
        })
        .collect::<Result<_>>()?;
    let mut noise = Vec::new();
    let mut si = 0usize;
    for (i, s) in release.dp.iter().enumerate() {
        let field = out_schema.field(ng + i);
        let array: ArrayRef = match s {
            DpStat::People => {
                noise.push(ColumnNoise {
                    column: field.name().clone(),
                    scale: sel_scale,
                    bound95: Some(dp::bound95(sel_scale)),
                });
                Arc::new(Int64Array::from_iter_values(
                    order.iter().map(|gi| selected[gi].max(0)),
                ))
            }
            DpStat::Count(_) => {
                let v = &noisy_stats[si];
                noise.push(ColumnNoise {
                    column: field.name().clone(),
                    scale: stat_scales[si],
                    bound95: Some(dp::bound95(stat_scales[si])),
                });
                si += 1;
                Arc::new(Int64Array::from_iter_values(v.iter().map(|x| (*x).max(0))))
            }
            DpStat::Sum(..) => {
                let v = &noisy_stats[si];
                noise.push(ColumnNoise {
                    column: field.name().clone(),
                    scale: stat_scales[si],
                    bound95: Some(dp::bound95(stat_scales[si])),
                });
                si += 1;
                Arc::new(Int64Array::from_iter_values(v.iter().copied()))
            }
            DpStat::Avg(..) => {
                let (sums, counts) = (&noisy_stats[si], &noisy_stats[si + 1]);
                noise.push(ColumnNoise {
                    column: field.name().clone(),
                    scale: stat_scales[si],
                    bound95: None,
                });
                si += 2;
                Arc::new(Float64Array::from_iter_values(
                    sums.iter()
                        .zip(counts)
                        .map(|(s, c)| *s as f64 / (*c).max(1) as f64),
                ))
            }
        };
        columns.push(cast(&array, field.data_type())?);
    }
    let schema: SchemaRef = Arc::new(out_schema);
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok((
        vec![batch],
        ReleaseNote {
            mode: "dp".into(),
            epsilon: Some(p.epsilon),
            delta: Some(dp::DELTA),
            selection_threshold: Some(threshold),
            noise,
            ..Default::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Person p is in p + 1 groups (rows spread over two parts); every person keeps
    /// min(p + 1, m) distinct rows of their own, and over many draws each of a
    /// person's groups is kept about m / (p + 1) of the time.
    #[test]
    fn reservoir_keeps_a_uniform_m_of_each_persons_groups() {
        let mut person = vec![];
        for p in 0..6u64 {
            for _ in 0..=p {
                person.push(Some(p));
            }
        }
        person.push(None);
        let n = person.len();
        let part = Part {
            group: vec![0; n],
            person: UInt64Array::from(person),
            stats: vec![],
        };
        let m = 2;
        let reps = 6000;
        let mut kept: HashMap<u32, u32> = HashMap::new();
        for _ in 0..reps {
            let picks = sample_groups(&part, m).unwrap();
            let mut per_person: HashMap<u64, Vec<u32>> = HashMap::new();
            for pick in picks {
                let id = part.person.value(pick as usize);
                per_person.entry(id).or_default().push(pick);
                *kept.entry(pick).or_default() += 1;
            }
            for p in 0..6u64 {
                let v = &per_person[&p];
                assert_eq!(v.len(), (p as usize + 1).min(m), "person {p}: {v:?}");
                let mut d = v.clone();
                d.sort_unstable();
                d.dedup();
                assert_eq!(d.len(), v.len());
            }
        }
        for r in 0..part.person.len() {
            if part.person.is_null(r) {
                assert!(!kept.contains_key(&(r as u32)));
                continue;
            }
            let groups = part.person.value(r) as f64 + 1.0;
            let expect = (m as f64 / groups).min(1.0);
            let got = f64::from(kept[&(r as u32)]) / f64::from(reps);
            // Binomial standard error at 6,000 draws is at most 0.0065.
            assert!((got - expect).abs() < 0.04, "{got} vs {expect}");
        }
        assert!(sample_groups(&part, 0).unwrap().is_empty());
    }
}

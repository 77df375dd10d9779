//! `per_person(person, x0, x1, …)`: for each group, every person in it with their own
//! statistics (row counts and sums), the input of DP contribution bounding.
//!
//! Grouping by (group keys, person) gives the same rows, but DataFusion then hashes
//! and compares every group key per row with the person id; this aggregate groups by
//! the query's own keys and keeps a map of people per group, as `COUNT(DISTINCT)` does,
//! which is what plain DataFusion runs for a reach query. Its value per group is a
//! struct of lists: `person` and one `s{i}` per statistic, aligned.

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, StructArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type, UInt64Type};
use datafusion::common::{HashMap, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature,
    Volatility,
};

use crate::people::{Grow, Single, counted, ids, lists};

/// What a statistic accumulates per person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Stat {
    /// Rows where the argument is not null.
    Count,
    /// The sum of the argument (an Int64; nulls add nothing).
    Sum,
}

impl Stat {
    /// What row `r` of the argument `x` adds.
    fn of(self, x: &Int64Array, r: usize) -> i64 {
        match (self, x.is_valid(r)) {
            (_, false) => 0,
            (Stat::Count, true) => 1,
            (Stat::Sum, true) => x.value(r),
        }
    }
}

/// `per_person(person, args…)`, one statistic per argument.
pub(crate) fn per_person(person: Expr, args: Vec<(Stat, Expr)>) -> Expr {
    let stats: Vec<Stat> = args.iter().map(|(s, _)| *s).collect();
    let mut call = vec![person];
    call.extend(args.into_iter().map(|(_, e)| e));
    AggregateUDF::from(PerPerson {
        signature: Signature::any(call.len(), Volatility::Immutable),
        stats,
    })
    .call(call)
}

/// The fields of the value: `person`, then `s0`, `s1`, …, each a list.
pub(crate) fn value_fields(stats: usize) -> Fields {
    let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
    std::iter::once(Field::new("person", list(DataType::UInt64), false))
        .chain((0..stats).map(|i| Field::new(format!("s{i}"), list(DataType::Int64), false)))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PerPerson {
    signature: Signature,
    stats: Vec<Stat>,
}

impl AggregateUDFImpl for PerPerson {
    fn name(&self) -> &str {
        "per_person"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(value_fields(self.stats.len())))
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(value_fields(self.stats.len())
            .iter()
            .map(|f| {
                Arc::new(
                    f.as_ref()
                        .clone()
                        .with_name(format!("{}[{}]", args.name, f.name())),
                )
            })
            .collect())
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Single(people(self.stats.clone())?)))
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(people(self.stats.clone())?)
    }
}

/// Per group, its people with their statistics inline (`N` ≥ the number of
/// statistics; the rest stay zero), so a row costs one lookup in one table.
#[derive(Debug)]
struct People<const N: usize> {
    stats: Vec<Stat>,
    groups: Vec<HashMap<u64, [i64; N]>>,
    held: usize,
}

/// The widths compiled; the executor refuses a release with more statistics.
pub(crate) const MAX_STATS: usize = 32;

/// The accumulator for `stats`, in the narrowest width that holds them.
fn people(stats: Vec<Stat>) -> Result<Box<dyn Grow>> {
    Ok(match stats.len() {
        0 | 1 => Box::new(People::<1>::new(stats)),
        2 => Box::new(People::<2>::new(stats)),
        3 | 4 => Box::new(People::<4>::new(stats)),
        5..=8 => Box::new(People::<8>::new(stats)),
        9..=MAX_STATS => Box::new(People::<MAX_STATS>::new(stats)),
        n => {
            return Err(datafusion::common::DataFusionError::Plan(format!(
                "a differentially private release computes at most {MAX_STATS} statistics per group; this one needs {n}"
            )));
        }
    })
}

impl<const N: usize> People<N> {
    fn new(stats: Vec<Stat>) -> Self {
        Self {
            stats,
            groups: Vec::new(),
            held: 0,
        }
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<HashMap<u64, [i64; N]>> {
        let taken = emit_to.take_needed(&mut self.groups);
        self.held -= taken.iter().map(HashMap::len).sum::<usize>();
        taken
    }

    /// The groups as aligned lists: `person`, then one per statistic.
    fn arrays(&self, groups: &[HashMap<u64, [i64; N]>]) -> Vec<ArrayRef> {
        let total: usize = groups.iter().map(HashMap::len).sum();
        let mut people = Vec::with_capacity(total);
        let mut stats: Vec<Vec<i64>> = vec![Vec::with_capacity(total); self.stats.len()];
        for (person, values) in groups.iter().flatten() {
            people.push(*person);
            for (out, v) in stats.iter_mut().zip(values) {
                out.push(*v);
            }
        }
        lists(
            groups.iter().map(HashMap::len),
            people.into(),
            stats.into_iter().map(Int64Array::from).collect(),
        )
    }
}

/// Adds `values` to `person`'s statistics in `group`; whether the person is new there.
fn add<const N: usize>(
    group: &mut HashMap<u64, [i64; N]>,
    person: u64,
    values: impl Iterator<Item = i64>,
) -> bool {
    let before = group.len();
    let slot = group.entry(person).or_insert([0; N]);
    for (s, v) in slot.iter_mut().zip(values) {
        *s = s.saturating_add(v);
    }
    group.len() > before
}

impl<const N: usize> Grow for People<N> {
    fn grow(&mut self, n: usize) {
        if self.groups.len() < n {
            self.groups.resize_with(n, HashMap::default);
        }
    }
}

fn int64s(values: &[ArrayRef]) -> Result<Vec<Int64Array>> {
    values
        .iter()
        .map(|a| {
            Ok(cast(a, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .clone())
        })
        .collect()
}

impl<const N: usize> GroupsAccumulator for People<N> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let person = ids(&values[0])?;
        let xs = int64s(&values[1..])?;
        for (r, &g) in group_indices.iter().enumerate() {
            if !counted(&person, opt_filter, r) {
                continue;
            }
            let values = self.stats.iter().zip(&xs).map(|(stat, x)| stat.of(x, r));
            self.held += usize::from(add(&mut self.groups[g], person.value(r), values));
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = self.take(emit_to);
        let fields = value_fields(self.stats.len());
        Ok(Arc::new(StructArray::try_new(
            fields,
            self.arrays(&groups),
            None,
        )?))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = self.take(emit_to);
        Ok(self.arrays(&groups))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let lists: Vec<&ListArray> = values.iter().map(|v| v.as_list::<i32>()).collect();
        let people = lists[0].values().as_primitive::<UInt64Type>().clone();
        let xs: Vec<Int64Array> = lists[1..]
            .iter()
            .map(|l| l.values().as_primitive::<Int64Type>().clone())
            .collect();
        let offsets = lists[0].value_offsets();
        for (r, &g) in group_indices.iter().enumerate() {
            for e in offsets[r] as usize..offsets[r + 1] as usize {
                let values = xs.iter().map(|x| x.value(e));
                self.held += usize::from(add(&mut self.groups[g], people.value(e), values));
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let person = ids(&values[0])?;
        let xs = int64s(&values[1..])?;
        let keep = |r: usize| counted(&person, opt_filter, r);
        let kept: Vec<usize> = (0..person.len()).filter(|r| keep(*r)).collect();
        let stats = self
            .stats
            .iter()
            .zip(&xs)
            .map(|(stat, x)| kept.iter().map(|r| stat.of(x, *r)).collect())
            .collect();
        Ok(lists(
            (0..person.len()).map(|r| usize::from(keep(r))),
            kept.iter().map(|r| person.value(*r)).collect(),
            stats,
        ))
    }

    fn size(&self) -> usize {
        self.groups.capacity() * size_of::<HashMap<u64, [i64; N]>>()
            + self.held * (2 * size_of::<u64>() + N * size_of::<i64>())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use datafusion::arrow::array::{RecordBatch, UInt32Array, UInt64Array};
    use datafusion::arrow::datatypes::{Schema, UInt32Type};
    use datafusion::catalog::MemTable;
    use datafusion::logical_expr::{col, lit};

    use super::*;
    use crate::people::testing::aggregate_both_ways;

    /// Per group and person: rows, non-null values and their sum, equal to a plain
    /// count, with and without partial aggregation and without GROUP BY.
    #[tokio::test]
    async fn per_person_statistics_through_every_phase() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::UInt32, false),
            Field::new("person", DataType::UInt64, true),
            Field::new("x", DataType::Int64, true),
        ]));
        // (g, person) → (rows, non-null x, sum x)
        let mut expect: BTreeMap<(u32, u64), (i64, i64, i64)> = BTreeMap::new();
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); 3];
        for b in 0..9u64 {
            let (mut gs, mut ps, mut xs) = (vec![], vec![], vec![]);
            for r in 0..400u64 {
                let g = ((r * 7 + b) % 13) as u32;
                let p = (r * 31 + b * 5) % 97;
                let x = (r % 5 != 0).then_some((r as i64 % 11) - 3);
                gs.push(g);
                ps.push((r % 50 != 7).then_some(p));
                xs.push(x);
                if r % 50 != 7 {
                    let e = expect.entry((g, p)).or_default();
                    e.0 += 1;
                    e.1 += i64::from(x.is_some());
                    e.2 += x.unwrap_or(0);
                }
            }
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(UInt32Array::from(gs)),
                    Arc::new(UInt64Array::from(ps)),
                    Arc::new(Int64Array::from(xs)),
                ],
            )
            .unwrap();
            parts[b as usize % 3].push(batch);
        }
        let table = Arc::new(MemTable::try_new(schema, parts).unwrap());
        let stats = || {
            vec![
                (Stat::Count, lit(1i64)),
                (Stat::Count, col("x")),
                (Stat::Sum, col("x")),
            ]
        };
        let run = |groups: Vec<Expr>| {
            let aggr = vec![per_person(col("person"), stats())];
            aggregate_both_ways(&table, 3, groups, aggr)
        };
        let mut total: BTreeMap<u64, (i64, i64, i64)> = BTreeMap::new();
        for ((_, p), v) in &expect {
            let e = total.entry(*p).or_default();
            (e.0, e.1, e.2) = (e.0 + v.0, e.1 + v.1, e.2 + v.2);
        }
        let entries = |value: &StructArray, row: usize| {
            let list = |i: usize| value.column(i).as_list::<i32>().value(row);
            let people = list(0);
            let people = people.as_primitive::<UInt64Type>();
            let s: Vec<ArrayRef> = (1..4).map(list).collect();
            (0..people.len())
                .map(|e| {
                    let v = |i: usize| s[i].as_primitive::<Int64Type>().value(e);
                    (people.value(e), (v(0), v(1), v(2)))
                })
                .collect::<Vec<_>>()
        };
        for (skip_partial, batches) in run(vec![col("g")]).await {
            let mut got: BTreeMap<(u32, u64), (i64, i64, i64)> = BTreeMap::new();
            for b in batches {
                let g = b.column(0).as_primitive::<UInt32Type>();
                for r in 0..b.num_rows() {
                    for (p, v) in entries(b.column(1).as_struct(), r) {
                        assert!(got.insert((g.value(r), p), v).is_none());
                    }
                }
            }
            assert_eq!(got, expect, "skip_partial {skip_partial}");
        }
        for (skip_partial, all) in run(vec![]).await {
            let got: BTreeMap<u64, (i64, i64, i64)> = entries(all[0].column(0).as_struct(), 0)
                .into_iter()
                .collect();
            assert_eq!(got, total, "skip_partial {skip_partial}");
        }
    }
}

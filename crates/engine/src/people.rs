//! `people_at_least(person)`: the distinct people of a group, counted up to `k`.
//!
//! Threshold release only needs to know whether a group covers at least `k` people.
//! `COUNT(DISTINCT person)` answers more than that at the price of a set of every
//! person per group; this aggregate keeps at most `k` ids per group and stops looking
//! at a group's rows once it has seen `k` different people, so a query over millions of
//! rows in a few large groups costs about as much as the query alone. The result is
//! exact below `k` and `k` at or above it, which is all the release compares.

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, ListArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::{HashSet, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, Expr, GroupsAccumulator, Signature,
    Volatility,
};

/// `people_at_least(person)` with threshold `k`, as an aggregate expression.
pub(crate) fn people_at_least(person: Expr, k: u64) -> Expr {
    AggregateUDF::from(PeopleAtLeast {
        k: k.max(1),
        signature: Signature::any(1, Volatility::Immutable),
    })
    .call(vec![person])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PeopleAtLeast {
    k: u64,
    signature: Signature,
}

/// The person ids of an aggregate's first argument.
pub(crate) fn ids(a: &ArrayRef) -> Result<UInt64Array> {
    Ok(cast(a, &DataType::UInt64)?
        .as_primitive::<UInt64Type>()
        .clone())
}

/// Whether row `r` counts: it has a person and passes the aggregate's FILTER.
pub(crate) fn counted(ids: &UInt64Array, filter: Option<&BooleanArray>, r: usize) -> bool {
    ids.is_valid(r) && filter.is_none_or(|f| f.is_valid(r) && f.value(r))
}

/// Aligned lists of the given lengths: one over `people`, then one over each
/// statistic's values.
pub(crate) fn lists(
    lengths: impl Iterator<Item = usize>,
    people: UInt64Array,
    stats: Vec<Int64Array>,
) -> Vec<ArrayRef> {
    let offsets = OffsetBuffer::<i32>::from_lengths(lengths);
    let list = |t: DataType, values: ArrayRef| -> ArrayRef {
        Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(t, true)),
            offsets.clone(),
            values,
            None,
        ))
    };
    std::iter::once(list(DataType::UInt64, Arc::new(people)))
        .chain(
            stats
                .into_iter()
                .map(|s| list(DataType::Int64, Arc::new(s))),
        )
        .collect()
}

fn id_list_field() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::UInt64, true))
}

impl AggregateUDFImpl for PeopleAtLeast {
    fn name(&self) -> &str {
        "people_at_least"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[ids]", args.name),
                DataType::List(id_list_field()),
                false,
            )),
            Arc::new(Field::new(
                format!("{}[full]", args.name),
                DataType::Boolean,
                false,
            )),
        ])
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Single(Box::new(Sets::new(self.k)))))
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Sets::new(self.k)))
    }
}

/// Per group: the people seen while fewer than `k`; a full group drops its set.
#[derive(Debug)]
struct Sets {
    k: u64,
    seen: Vec<HashSet<u64>>,
    full: Vec<bool>,
    held: usize,
}

impl Sets {
    fn new(k: u64) -> Self {
        Self {
            k,
            seen: Vec::new(),
            full: Vec::new(),
            held: 0,
        }
    }

    fn resize(&mut self, groups: usize) {
        if self.seen.len() < groups {
            self.seen.resize_with(groups, HashSet::default);
            self.full.resize(groups, false);
        }
    }

    fn add(&mut self, g: usize, id: u64) {
        if self.full[g] {
            return;
        }
        let set = &mut self.seen[g];
        if set.insert(id) {
            self.held += 1;
            if set.len() as u64 >= self.k {
                self.held -= set.len();
                *set = HashSet::default();
                self.full[g] = true;
            }
        }
    }

    fn mark_full(&mut self, g: usize) {
        if !self.full[g] {
            self.held -= self.seen[g].len();
            self.seen[g] = HashSet::default();
            self.full[g] = true;
        }
    }

    fn counts(&self, seen: &[HashSet<u64>], full: &[bool]) -> Int64Array {
        Int64Array::from_iter_values(
            seen.iter()
                .zip(full)
                .map(|(s, f)| if *f { self.k as i64 } else { s.len() as i64 }),
        )
    }

    fn take(&mut self, emit_to: EmitTo) -> (Vec<HashSet<u64>>, Vec<bool>) {
        let seen = emit_to.take_needed(&mut self.seen);
        let full = emit_to.take_needed(&mut self.full);
        self.held -= seen.iter().map(HashSet::len).sum::<usize>();
        (seen, full)
    }

    fn merge(&mut self, values: &[ArrayRef], group_indices: &[usize]) -> Result<()> {
        let lists = values[0].as_list::<i32>();
        let full = values[1].as_boolean();
        for (i, &g) in group_indices.iter().enumerate() {
            if self.full[g] {
                continue;
            }
            if full.value(i) {
                self.mark_full(g);
                continue;
            }
            let row = lists.value(i);
            for id in row.as_primitive::<UInt64Type>().iter().flatten() {
                self.add(g, id);
            }
        }
        Ok(())
    }
}

fn state_arrays(seen: &[HashSet<u64>], full: Vec<bool>) -> Vec<ArrayRef> {
    let ids = seen.iter().flatten().copied().collect();
    let mut out = lists(seen.iter().map(HashSet::len), ids, Vec::new());
    out.push(Arc::new(BooleanArray::from(full)));
    out
}

impl GroupsAccumulator for Sets {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let ids = ids(&values[0])?;
        for (i, &g) in group_indices.iter().enumerate() {
            if !self.full[g] && counted(&ids, opt_filter, i) {
                self.add(g, ids.value(i));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (seen, full) = self.take(emit_to);
        Ok(Arc::new(self.counts(&seen, &full)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (seen, full) = self.take(emit_to);
        Ok(state_arrays(&seen, full))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        self.merge(values, group_indices)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let ids = ids(&values[0])?;
        let keep = |i: usize| counted(&ids, opt_filter, i);
        let kept = (0..ids.len()).filter(|i| keep(*i)).map(|i| ids.value(i));
        let lengths = (0..ids.len()).map(|i| usize::from(keep(i)));
        let mut out = lists(lengths, kept.collect(), Vec::new());
        // A single id fills a group only when k is 1; the merge decides that.
        out.push(Arc::new(BooleanArray::from(vec![false; ids.len()])));
        Ok(out)
    }

    fn size(&self) -> usize {
        self.seen.capacity() * size_of::<HashSet<u64>>()
            + self.full.capacity()
            + self.held * 2 * size_of::<u64>()
    }
}

/// A groups accumulator that can make room for `n` groups before seeing any row.
pub(crate) trait Grow: GroupsAccumulator + std::fmt::Debug + Sync {
    fn grow(&mut self, n: usize);
}

impl Grow for Sets {
    fn grow(&mut self, n: usize) {
        self.resize(n);
    }
}

/// Any of these groups accumulators as the plain accumulator of an aggregate without
/// GROUP BY: one group, index 0.
#[derive(Debug)]
pub(crate) struct Single(pub(crate) Box<dyn Grow>);

impl Accumulator for Single {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let n = values.first().map_or(0, |v| v.len());
        self.0.update_batch(values, &vec![0; n], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.0.grow(1);
        ScalarValue::try_from_array(&self.0.evaluate(EmitTo::All)?, 0)
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.0.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.0.grow(1);
        self.0
            .state(EmitTo::All)?
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let n = states.first().map_or(0, |v| v.len());
        self.0.merge_batch(states, &vec![0; n], 1)
    }
}

/// Running an aggregate in tests through every phase DataFusion may use.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used)]

    use datafusion::arrow::array::RecordBatch;
    use datafusion::catalog::MemTable;
    use datafusion::datasource::provider_as_source;
    use datafusion::logical_expr::LogicalPlanBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// `aggr` grouped by `groups` over `table` (`partitions` partitions), run with
    /// partial aggregation and with it skipped (every row then goes through
    /// `convert_to_state`): (skipped, batches) for each.
    pub(crate) async fn aggregate_both_ways(
        table: &Arc<MemTable>,
        partitions: usize,
        groups: Vec<Expr>,
        aggr: Vec<Expr>,
    ) -> Vec<(bool, Vec<RecordBatch>)> {
        let mut out = Vec::new();
        for skip_partial in [false, true] {
            let mut config = SessionConfig::new().with_target_partitions(partitions);
            if skip_partial {
                let o = config.options_mut();
                o.execution.skip_partial_aggregation_probe_rows_threshold = 1;
                o.execution.skip_partial_aggregation_probe_ratio_threshold = 0.0;
            }
            let ctx = SessionContext::new_with_config(config);
            let plan = LogicalPlanBuilder::scan("t", provider_as_source(table.clone()), None)
                .unwrap()
                .aggregate(groups.clone(), aggr.clone())
                .unwrap()
                .build()
                .unwrap();
            let batches = ctx
                .execute_logical_plan(plan)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            out.push((skip_partial, batches));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use datafusion::arrow::array::{RecordBatch, UInt32Array};
    use datafusion::arrow::datatypes::{Int64Type, Schema, UInt32Type};
    use datafusion::catalog::MemTable;
    use datafusion::functions_aggregate::expr_fn::count_distinct;
    use datafusion::logical_expr::col;

    use super::testing::aggregate_both_ways;
    use super::*;

    /// Group g has g distinct people (g = 0..120), each appearing three times, plus
    /// null ids, spread over four partitions; the counts equal min(distinct, k) with and
    /// without partial aggregation (which then goes through `convert_to_state`).
    #[tokio::test]
    async fn counts_people_up_to_k_through_every_phase() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::UInt32, false),
            Field::new("person", DataType::UInt64, true),
        ]));
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); 4];
        // Each group's three copies of its people land in three partitions, so the
        // merge must not count a person twice.
        for g in 0..120u32 {
            for copy in 0..3u32 {
                let n = u64::from(g);
                let mut ps: Vec<Option<u64>> = (0..n).map(|p| Some(p * 7)).collect();
                ps.push(None);
                let b = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(UInt32Array::from(vec![g; ps.len()])),
                        Arc::new(UInt64Array::from(ps)),
                    ],
                )
                .unwrap();
                parts[((g + copy) % 4) as usize].push(b);
            }
        }
        let table = Arc::new(MemTable::try_new(schema, parts).unwrap());
        for k in [1u64, 50, 200] {
            let aggr = vec![
                people_at_least(col("person"), k).alias("at_least"),
                count_distinct(col("person")).alias("exact"),
            ];
            for (skip_partial, batches) in
                aggregate_both_ways(&table, 4, vec![col("g")], aggr).await
            {
                let mut seen = 0;
                for b in &batches {
                    let g = b.column(0).as_primitive::<UInt32Type>();
                    let at_least = b.column(1).as_primitive::<Int64Type>();
                    let exact = b.column(2).as_primitive::<Int64Type>();
                    for r in 0..b.num_rows() {
                        assert_eq!(exact.value(r), i64::from(g.value(r)));
                        assert_eq!(
                            at_least.value(r),
                            exact.value(r).min(k as i64),
                            "group {} k {k} skip_partial {skip_partial}",
                            g.value(r)
                        );
                        seen += 1;
                    }
                }
                assert_eq!(seen, 120);
            }

            // Without GROUP BY: every person of every group, 119 * 7 + 1 apart.
            let aggr = vec![people_at_least(col("person"), k)];
            for (_, b) in aggregate_both_ways(&table, 4, vec![], aggr).await {
                let v = b[0].column(0).as_primitive::<Int64Type>();
                assert_eq!(v.value(0), 119.min(k as i64));
            }
        }
    }
}

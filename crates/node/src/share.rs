//! The columns a member shares for the joined view, and the host's check of them.
//!
//! After its side of the PSI, a member sends the host every table of its party in the
//! spec: the columns the spec declares (dimensions, measures, timestamps) and, instead
//! of the record id and the identifiers, the record's row in its identity table — the
//! same numbering as its join keys. Only the host, which links the join keys, can turn
//! a row into a person id; the identifiers never leave the member. Each table goes as
//! parts of at most [`PART_ROWS`] rows, each an Arrow IPC stream, so that memory stays
//! bounded on both sides; the host checks every part against the spec before it keeps
//! it, and builds the view when the match is linked.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use jingteng_engine::policy::Role;
use jingteng_engine::view::{ROW, SharedTable};
use jingteng_psi::Collaboration;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::rights::LeftOut;
use crate::{Error, NodeDir, Result, file_err};

/// Rows per part a member sends.
pub(crate) const PART_ROWS: usize = 262_144;

/// Most parts one table may have (about 260 billion rows).
pub(crate) const MAX_PARTS: u32 = 1_000_000;

/// The media type of a part.
pub(crate) const ARROW_STREAM_TYPE: &str = "application/vnd.apache.arrow.stream";

/// How a member hands a part to the host: `(table, part number, Arrow IPC bytes)`.
pub(crate) type SendPart<'a> = dyn FnMut(&str, u32, Vec<u8>) -> Result<()> + 'a;

/// What a member says it sent of one table, in its contribution's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SentTable {
    /// The table, as the spec names it.
    pub(crate) table: String,
    /// Parts sent, numbered from 0.
    pub(crate) parts: u32,
    /// Rows sent.
    pub(crate) rows: u64,
    /// Rows left out: their record id is not in the identity table.
    pub(crate) orphans: u64,
    /// Rows left out because their record was forgotten or opted out (for the identity
    /// table: the records left out of the match).
    #[serde(default)]
    pub(crate) excluded: u64,
    /// Rows left out because they are older than the table's `retention_days`.
    #[serde(default)]
    pub(crate) expired: u64,
}

/// The latest imported version of this node's `table`.
pub(crate) fn latest_import(node: &NodeDir, table: &str) -> Result<PathBuf> {
    let dataset = format!("{}/{table}", node.config().party);
    let version = node
        .catalog()?
        .datasets()?
        .into_iter()
        .find(|d| d.name == dataset)
        .ok_or_else(|| {
            Error::Contract(format!(
                "no imported {dataset}: run `jingteng import --table {table}` first"
            ))
        })?;
    Ok(node.dir().join(version.path))
}

/// The schema a part of `party.table` must have: [`ROW`] (when the table is about
/// people) and the declared columns with the types `jingteng import` gives them.
pub(crate) fn expected_schema(
    collab: &Collaboration,
    party: &str,
    table: &str,
) -> Option<SchemaRef> {
    let p = collab.parties().iter().find(|p| p.name == party)?;
    let t = p.all_tables().find(|t| t.name == table)?;
    let mut fields = Vec::new();
    if t.record_id.is_some() {
        fields.push(Field::new(ROW, DataType::UInt32, false));
    }
    fields.extend(
        t.dimensions
            .iter()
            .map(|c| Field::new(c, Role::Dimension.data_type(), true)),
    );
    fields.extend(
        t.measures
            .iter()
            .map(|c| Field::new(c, Role::Measure.data_type(), true)),
    );
    fields.extend(
        t.timestamps
            .iter()
            .map(|c| Field::new(c, Role::Timestamp.data_type(), true)),
    );
    Some(Arc::new(Schema::new(fields)))
}

/// Sends every table of this member's party, part by part, through `send(table, part,
/// bytes)`; returns what was sent, for the contribution's header. `identity` is the
/// identity table the match read (without the records `left_out`); rows of the other
/// tables about those records are left out too, and rows older than their table's
/// retention (counted from `now`, Unix seconds) are not sent.
pub(crate) fn share_tables(
    node: &NodeDir,
    collab: &Collaboration,
    identity: &Path,
    left_out: &LeftOut,
    now: i64,
    send: &mut SendPart<'_>,
) -> Result<Vec<SentTable>> {
    let me = node.config().party.clone();
    let party = collab
        .parties()
        .iter()
        .find(|p| p.name == me)
        .ok_or_else(|| Error::Contract("this node is not a party of the spec".into()))?;
    let rid = party
        .identity
        .record_id
        .clone()
        .ok_or_else(|| Error::Contract(format!("{me}'s identity table has no record_id")))?;
    // Row of every record id of the identity table, in the order the match read it.
    let mut row_of: HashMap<String, u32> = HashMap::new();
    let mut n: u32 = 0;
    for batch in read_parquet(identity)? {
        let batch = batch?;
        let ids = text_column(&batch, &rid, identity)?;
        for i in 0..ids.len() {
            if ids.is_valid(i) {
                row_of.insert(ids.value(i).to_string(), n);
            }
            n = n
                .checked_add(1)
                .ok_or_else(|| file_err(identity, "more than 4 billion records"))?;
        }
    }
    let mut sent = Vec::new();
    for t in party.all_tables() {
        let schema = expected_schema(collab, &me, &t.name)
            .ok_or_else(|| Error::Internal(format!("no schema for {me}.{}", t.name)))?;
        let path = if t.name == party.identity.name {
            identity.to_path_buf()
        } else {
            latest_import(node, &t.name)?
        };
        let is_identity = t.name == party.identity.name;
        let mut out = SentTable {
            table: t.name.clone(),
            parts: 0,
            rows: 0,
            orphans: 0,
            excluded: if is_identity { left_out.records } else { 0 },
            expired: 0,
        };
        // Retention: by the table's first timestamp, as local mode's view drops rows.
        let cutoff_ms = match (t.retention_days, t.timestamps.first()) {
            (Some(days), Some(ts)) => Some((ts.clone(), (now - i64::from(days) * 86_400) * 1000)),
            _ => None,
        };
        let mut pending: Vec<RecordBatch> = Vec::new();
        let mut pending_rows = 0usize;
        let mut next_row: u32 = 0;
        let mut flush = |pending: &mut Vec<RecordBatch>, out: &mut SentTable| -> Result<()> {
            let bytes = encode_part(&schema, pending)?;
            send(&t.name, out.parts, bytes)?;
            out.parts += 1;
            pending.clear();
            Ok(())
        };
        for batch in read_parquet(&path)? {
            let batch = batch?;
            let n = batch.num_rows();
            // Which rows go: retention first (as local mode's view filters), then rows
            // whose record is not (or no longer) in the identity table the match read.
            let fresh: Option<Vec<bool>> = match &cutoff_ms {
                Some((ts, cutoff)) => {
                    let col = batch
                        .column_by_name(ts)
                        .ok_or_else(|| file_err(&path, format!("no column {ts}")))?;
                    let ms = cast(col, &Role::Timestamp.data_type())?;
                    let ms = cast(&ms, &DataType::Int64)?;
                    let ms = ms
                        .as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .ok_or_else(|| Error::Internal("timestamp cast".into()))?;
                    Some(
                        (0..n)
                            .map(|i| ms.is_valid(i) && ms.value(i) >= *cutoff)
                            .collect(),
                    )
                }
                None => None,
            };
            let is_fresh = |i: usize| fresh.as_ref().is_none_or(|f| f[i]);
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
            if let Some(r) = &t.record_id {
                let rows: UInt32Array = if is_identity {
                    // The identity table's numbering is the match's, retention or not.
                    let first = next_row;
                    next_row = u32::try_from(n)
                        .ok()
                        .and_then(|k| next_row.checked_add(k))
                        .ok_or_else(|| file_err(&path, "more than 4 billion records"))?;
                    (first..next_row).map(Some).collect()
                } else {
                    let ids = text_column(&batch, r, &path)?;
                    (0..n)
                        .map(|i| {
                            let id = ids.is_valid(i).then(|| ids.value(i));
                            let row = id.and_then(|id| row_of.get(id).copied());
                            if row.is_none() && is_fresh(i) {
                                if id.is_some_and(|id| left_out.ids.contains(id)) {
                                    out.excluded += 1;
                                } else {
                                    out.orphans += 1;
                                }
                            }
                            row
                        })
                        .collect()
                };
                cols.push(Arc::new(rows));
            }
            for f in schema
                .fields()
                .iter()
                .skip(usize::from(t.record_id.is_some()))
            {
                let col = batch
                    .column_by_name(f.name())
                    .ok_or_else(|| file_err(&path, format!("no column {}", f.name())))?;
                cols.push(cast(col, f.data_type())?);
            }
            out.expired += (0..n).filter(|&i| !is_fresh(i)).count() as u64;
            // Filtered column by column: a row without a record has a null `__row`, which
            // the (non-nullable) schema refuses in a batch.
            if fresh.is_some() || t.record_id.is_some() {
                let has_row = |i: usize| t.record_id.is_none() || cols[0].is_valid(i);
                let keep: arrow::array::BooleanArray =
                    (0..n).map(|i| Some(is_fresh(i) && has_row(i))).collect();
                cols = cols
                    .iter()
                    .map(|c| arrow::compute::filter(c, &keep))
                    .collect::<std::result::Result<_, _>>()?;
            }
            let b = RecordBatch::try_new(schema.clone(), cols)?;
            out.rows += b.num_rows() as u64;
            pending_rows += b.num_rows();
            pending.push(b);
            if pending_rows >= PART_ROWS {
                flush(&mut pending, &mut out)?;
                pending_rows = 0;
            }
        }
        if !pending.is_empty() || out.parts == 0 {
            flush(&mut pending, &mut out)?;
        }
        sent.push(out);
    }
    Ok(sent)
}

pub(crate) fn read_parquet(
    path: &Path,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let file = std::fs::File::open(path).map_err(|e| file_err(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(65_536).build())
        .map_err(|e| file_err(path, e))
}

pub(crate) fn text_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
) -> Result<&'a arrow::array::StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
        .ok_or_else(|| file_err(path, format!("no text column {name}")))
}

fn encode_part(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut w = StreamWriter::try_new(Vec::new(), schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    Ok(w.into_inner()?)
}

/// The host's check of a part a member sent: an Arrow IPC stream of exactly the
/// expected schema whose rows decode; returns its rows. Anything else is an error that
/// says what is wrong (never a panic).
pub(crate) fn check_part(schema: &SchemaRef, bytes: &[u8]) -> std::result::Result<u64, String> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| format!("not an Arrow IPC stream: {e}"))?;
    let got = reader.schema();
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = got.fields().len() == schema.fields().len()
        && got
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        return Err(format!(
            "columns ({}) are not the shared columns the spec declares ({})",
            names(&got),
            names(schema)
        ));
    }
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| format!("a malformed batch: {e}"))?;
        if let Some(c) = batch.column_by_name(ROW)
            && c.null_count() > 0
        {
            return Err(format!("{ROW} has nulls"));
        }
        rows += batch.num_rows() as u64;
    }
    Ok(rows)
}

/// Where the host keeps part `part` of a member's table for a run.
pub(crate) fn part_path(run_dir: &Path, party: usize, table: &str, part: u32) -> PathBuf {
    run_dir
        .join(format!("party-{party}"))
        .join(table)
        .join(format!("part-{part:06}.arrow"))
}

/// The tables every party sent for a run, as the engine builds the view from them; an
/// error names the first table or part that is missing.
pub(crate) fn shared_tables(
    run_dir: &Path,
    collab: &Collaboration,
    sent: &[Vec<SentTable>],
) -> Result<Vec<SharedTable>> {
    let mut out = Vec::new();
    for pi in 0..collab.parties().len() {
        let theirs = sent.get(pi).map_or(&[][..], Vec::as_slice);
        out.extend(party_shared(run_dir, collab, pi, theirs)?);
    }
    Ok(out)
}

/// Checks that party `pi` sent every table the spec gives it, every part announced.
pub(crate) fn check_sent(
    run_dir: &Path,
    collab: &Collaboration,
    pi: usize,
    sent: &[SentTable],
) -> Result<()> {
    party_shared(run_dir, collab, pi, sent).map(|_| ())
}

fn party_shared(
    run_dir: &Path,
    collab: &Collaboration,
    pi: usize,
    sent: &[SentTable],
) -> Result<Vec<SharedTable>> {
    let party = collab
        .parties()
        .get(pi)
        .ok_or_else(|| Error::Internal(format!("no party {pi}")))?;
    let mut out = Vec::new();
    for t in party.all_tables() {
        let s = sent
            .iter()
            .find(|s| s.table == t.name)
            .ok_or_else(|| Error::Contract(format!("{} did not share {}", party.name, t.name)))?;
        let files: Vec<PathBuf> = (0..s.parts.min(MAX_PARTS))
            .map(|k| part_path(run_dir, pi, &t.name, k))
            .collect();
        if let Some(k) = files.iter().position(|f| !f.exists()) {
            return Err(Error::Contract(format!(
                "{}.{}: part {k} of {} was announced but not received",
                party.name, t.name, s.parts
            )));
        }
        out.push(SharedTable {
            party: party.name.clone(),
            table: t.name.clone(),
            files,
            orphan_rows: s.orphans,
            excluded_rows: s.excluded,
            expired_rows: s.expired,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(ROW, DataType::UInt32, false),
            Field::new("age_band", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn a_part_round_trips_and_anything_else_is_refused() {
        let s = schema();
        let b = RecordBatch::try_new(
            s.clone(),
            vec![
                Arc::new(UInt32Array::from(vec![0, 1, 2])),
                Arc::new(arrow::array::StringArray::from(vec![
                    "18-24", "25-34", "35-44",
                ])),
            ],
        )
        .unwrap();
        let bytes = encode_part(&s, &[b]).unwrap();
        assert_eq!(check_part(&s, &bytes), Ok(3));
        for cut in [0, 1, 8, bytes.len() / 2, bytes.len() - 1] {
            assert!(check_part(&s, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let other = Arc::new(Schema::new(vec![Field::new(ROW, DataType::UInt32, false)]));
        let e = check_part(&other, &bytes).unwrap_err();
        assert!(e.contains("not the shared columns"), "{e}");
        let mut flipped = bytes.clone();
        for i in (0..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5a;
            let _ = check_part(&s, &flipped);
        }
    }
}

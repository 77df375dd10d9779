//! The joined view: every party's tables with record ids and identifiers replaced by a
//! pseudonymous person id shared by all records of one person, and only the columns
//! the spec declares (dimensions, measures, timestamps). This is what the host queries.
//!
//! In local mode (one process holds every party's files) the view is built by running
//! the match and writing each table as Parquet under `DIR/joined/<party>/<table>.parquet`.
//! The whole view is written in a temporary folder and renamed into place, so a
//! half-built view is never seen; it is rebuilt only when the spec or a file changes.
//!
//! Data rights (docs/audiences.md, "Data rights"): the people behind records that
//! opted out or were deleted ([`Exclusions`], from `jingteng forget` and the spec's
//! `opt_out_column`) are left out of every table, and rows older than their table's
//! `retention_days` are dropped; both are part of the fingerprint, so a new request
//! rebuilds the view. Each party's own record ids with their person id are kept beside
//! the view (`DIR/joined/records/<party>.parquet`), never registered as a table: that is
//! how an audience reaches its activation party as the party's own user ids.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use futures::StreamExt;
use jingteng_match::read::{ColumnReader, cell};
use jingteng_match::{MatchReport, Progress, Source};
use jingteng_psi::{Collaboration, Linked};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::{PERSON, Role};
use crate::{Error, Result};

/// Person ids at or above this are records linked to no other party's.
const UNLINKED: u64 = 1 << 32;

/// The person id of row `row` of party `party`'s identity table, the same in local mode
/// and at a networked host: the linked person, or for a record linked to nobody an id of
/// its own (`UNLINKED` + the rows of the parties before it + its row).
fn person_id(linked: &Linked, party: usize, offset: u64, row: u32) -> u64 {
    linked
        .person_of(party, row)
        .map_or(UNLINKED + offset + u64::from(row), u64::from)
}

/// What a built view holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewInfo {
    /// The collaboration.
    pub collaboration: String,
    /// Hash of the spec and the input files it was built from: answers are cached per
    /// view.
    pub fingerprint: String,
    /// The tables.
    pub tables: Vec<ViewTable>,
    /// The match it stands on.
    pub report: MatchReport,
    /// People left out of every table (opt-outs and deletions). At a networked host:
    /// the records the parties left out of the match (each party leaves out its own).
    #[serde(default)]
    pub excluded_people: u64,
}

/// What the view leaves out beyond the spec's column roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    /// Per party, record ids whose person is left out of every table (opt-outs and
    /// deletions recorded with `jingteng forget`).
    pub forgotten: BTreeMap<String, BTreeSet<String>>,
    /// The instant (Unix seconds) retention is counted back from.
    pub now: i64,
}

impl Exclusions {
    /// The opt-outs and deletions the catalog at `DIR/catalog.sqlite` holds for
    /// `collab` (none when there is no catalog yet), with retention counted from now.
    pub fn from_state(dir: &Path, collab: &str) -> Result<Self> {
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut out = Self {
            forgotten: BTreeMap::new(),
            now,
        };
        let path = dir.join("catalog.sqlite");
        if path.exists() {
            let catalog = jingteng_catalog::Catalog::open(&path)?;
            for r in catalog.forget_requests(collab)? {
                out.forgotten
                    .entry(r.party)
                    .or_default()
                    .insert(r.record_id);
            }
        }
        Ok(out)
    }
}

/// Where a party's record ids with their person id are kept beside the view.
pub fn records_path(dir: &Path, party: &str) -> PathBuf {
    dir.join("joined")
        .join("records")
        .join(format!("{party}.parquet"))
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "y"
    )
}

/// One table of the view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewTable {
    /// `party.table`.
    pub name: String,
    /// Parquet file, relative to the view folder.
    pub path: String,
    /// Rows written.
    pub rows: u64,
    /// Rows whose record id is not in the party's identity table (left out).
    pub orphan_rows: u64,
    /// Rows left out because their person opted out or was deleted.
    #[serde(default)]
    pub excluded_rows: u64,
    /// Rows left out because they are older than the table's retention.
    #[serde(default)]
    pub expired_rows: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Hash of the spec text, every input file's path, size and modification time, the
/// exclusions and (when a table has a retention) the day retention counts from.
fn fingerprint(
    spec_text: &str,
    collab: &Collaboration,
    base: &Path,
    exclusions: &Exclusions,
) -> Result<String> {
    let mut h = Sha256::new();
    h.update(spec_text.as_bytes());
    for (party, ids) in &exclusions.forgotten {
        for id in ids {
            h.update(format!("forget|{party}|{}|{id}\n", id.len()).as_bytes());
        }
    }
    let retention = collab
        .parties()
        .iter()
        .flat_map(|p| p.all_tables())
        .any(|t| t.retention_days.is_some());
    if retention {
        h.update(format!("retention-day|{}\n", exclusions.now.div_euclid(86_400)).as_bytes());
    }
    for p in collab.parties() {
        for t in p.all_tables() {
            let path = base.join(&t.path);
            let meta = std::fs::metadata(&path).map_err(io(&path))?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            h.update(format!("{}|{}|{mtime}\n", t.path, meta.len()).as_bytes());
        }
    }
    Ok(h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Builds (or reuses) the joined view of a spec's files in `dir`; `progress` sees the
/// match's rows. Opt-outs and deletions recorded in `dir`'s catalog are left out and
/// retention counts from now ([`Exclusions::from_state`]).
pub async fn build_local(
    spec_path: &Path,
    dir: &Path,
    progress: Arc<dyn Progress + Send>,
) -> Result<ViewInfo> {
    let collab = jingteng_match::read_spec(spec_path)?;
    let exclusions = Exclusions::from_state(dir, collab.id())?;
    build_local_with(spec_path, dir, progress, &exclusions).await
}

/// [`build_local`] with explicit exclusions and clock.
pub async fn build_local_with(
    spec_path: &Path,
    dir: &Path,
    progress: Arc<dyn Progress + Send>,
    exclusions: &Exclusions,
) -> Result<ViewInfo> {
    let text = std::fs::read_to_string(spec_path).map_err(io(spec_path))?;
    let collab = jingteng_match::read_spec(spec_path)?;
    let base = spec_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let fp = fingerprint(&text, &collab, &base, exclusions)?;
    if let Ok(info) = load(dir)
        && info.fingerprint == fp
    {
        return Ok(info);
    }
    let c2 = collab.clone();
    let b2 = base.clone();
    let (report, linked) = tokio::task::spawn_blocking(move || {
        let sources = c2
            .parties()
            .iter()
            .map(|p| Source::File(b2.join(&p.identity.path)))
            .collect();
        jingteng_match::match_sources_linked(&c2, sources, &*progress)
    })
    .await
    .map_err(|e| Error::Internal(format!("match task: {e}")))??;
    let staging = staging_dir(dir)?;
    let (tables, excluded_people) =
        write_tables(&collab, &base, &linked, &staging, exclusions).await?;
    let info = ViewInfo {
        collaboration: collab.id().to_string(),
        fingerprint: fp,
        tables,
        report,
        excluded_people,
    };
    publish(dir, &staging, &info)?;
    Ok(info)
}

/// A fresh staging folder for a view being built in `dir`.
fn staging_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let staging = dir.join(format!(".joined-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    Ok(staging)
}

/// Writes `view.json` into the staging folder and renames it into place as
/// `DIR/joined`: readers see the old view or the new one, never half of one.
fn publish(dir: &Path, staging: &Path, info: &ViewInfo) -> Result<()> {
    let json = serde_json::to_vec_pretty(info).map_err(|e| Error::Internal(e.to_string()))?;
    let vpath = staging.join("view.json");
    std::fs::write(&vpath, json).map_err(io(&vpath))?;
    let target = dir.join("joined");
    if target.exists() {
        let old = dir.join(format!(".old-{}", std::process::id()));
        std::fs::rename(&target, &old).map_err(io(&target))?;
        std::fs::rename(staging, &target).map_err(io(staging))?;
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        std::fs::rename(staging, &target).map_err(io(staging))?;
    }
    Ok(())
}

/// The column a member's shared table carries instead of its record id: the record's
/// row in the member's identity table, as the member numbered it in the match.
pub const ROW: &str = "__row";

/// One table a member shared for the joined view: Arrow IPC stream files whose first
/// column is [`ROW`] (`UInt32`) when the table is about people, followed by the
/// columns the spec declares, in the order dimensions, measures, timestamps.
#[derive(Debug, Clone)]
pub struct SharedTable {
    /// The party.
    pub party: String,
    /// The table, as the spec names it.
    pub table: String,
    /// Its parts, in order.
    pub files: Vec<PathBuf>,
    /// Rows the member left out because their record id is not in its identity table.
    pub orphan_rows: u64,
    /// Rows the member left out because their record was forgotten or opted out (for
    /// the identity table: the records it left out of the match).
    pub excluded_rows: u64,
    /// Rows the member left out because they are older than the table's retention.
    pub expired_rows: u64,
}

/// Builds the joined view at a networked host from the match's linkage and the tables
/// the members shared (see [`SharedTable`]): each record's row becomes its person id,
/// exactly as [`build_local`] numbers people, so both modes give the same answers.
/// Written in a staging folder and renamed into place.
pub fn build_from_shared(
    dir: &Path,
    collab: &Collaboration,
    fingerprint: &str,
    report: MatchReport,
    linked: &Linked,
    shared: &[SharedTable],
) -> Result<ViewInfo> {
    use datafusion::arrow::ipc::reader::StreamReader;
    let staging = staging_dir(dir)?;
    let mut tables = Vec::new();
    let mut offset: u64 = 0;
    let mut excluded_records = 0u64;
    for (pi, party) in collab.parties().iter().enumerate() {
        let records = *linked
            .records
            .get(pi)
            .ok_or_else(|| Error::Internal(format!("no record count for party {pi}")))?;
        for t in party.all_tables() {
            let name = format!("{}.{}", party.name, t.name);
            let sent = shared
                .iter()
                .find(|s| s.party == party.name && s.table == t.name)
                .ok_or_else(|| Error::Internal(format!("{name} was not shared")))?;
            let rel = PathBuf::from(&party.name).join(format!("{}.parquet", t.name));
            let dest = staging.join(&rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mut writer: Option<ArrowWriter<std::fs::File>> = None;
            let mut rows = 0u64;
            for path in &sent.files {
                let file = std::fs::File::open(path).map_err(io(path))?;
                let reader =
                    StreamReader::try_new(std::io::BufReader::new(file), None).map_err(|e| {
                        Error::Input {
                            path: path.clone(),
                            message: e.to_string(),
                        }
                    })?;
                if writer.is_none() {
                    let schema = if t.record_id.is_some() {
                        person_schema(&reader.schema()).map_err(|message| Error::Input {
                            path: path.clone(),
                            message: format!("{name}: {message}"),
                        })?
                    } else {
                        reader.schema()
                    };
                    let file = std::fs::File::create(&dest).map_err(io(&dest))?;
                    writer = Some(ArrowWriter::try_new(file, schema, None)?);
                }
                for batch in reader {
                    let batch = batch.map_err(|e| Error::Input {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                    let out = if t.record_id.is_some() {
                        with_persons(&batch, |row| {
                            if row >= records {
                                return None;
                            }
                            Some(person_id(linked, pi, offset, row))
                        })
                        .map_err(|message| Error::Input {
                            path: path.clone(),
                            message: format!("{name}: {message}"),
                        })?
                    } else {
                        batch
                    };
                    if let Some(w) = writer.as_mut() {
                        w.write(&out).map_err(|e| Error::Input {
                            path: path.clone(),
                            message: format!("{name}: {e}"),
                        })?;
                    }
                    rows += out.num_rows() as u64;
                }
            }
            match writer {
                Some(w) => {
                    w.close()?;
                }
                None => {
                    return Err(Error::Internal(format!("{name}: shared in no part")));
                }
            }
            if t.name == party.identity.name {
                excluded_records += sent.excluded_rows;
            }
            tables.push(ViewTable {
                name,
                path: rel.to_string_lossy().to_string(),
                rows,
                orphan_rows: sent.orphan_rows,
                excluded_rows: sent.excluded_rows,
                expired_rows: sent.expired_rows,
            });
        }
        write_rows(&staging, &party.name, records, |row| {
            person_id(linked, pi, offset, row)
        })?;
        offset += u64::from(records);
    }
    let info = ViewInfo {
        collaboration: collab.id().to_string(),
        fingerprint: fingerprint.to_string(),
        tables,
        report,
        excluded_people: excluded_records,
    };
    publish(dir, &staging, &info)?;
    Ok(info)
}

/// Where a networked host keeps, beside the view, each row of a party's identity table
/// with its person id ([`ROW`] `UInt32`, [`PERSON`] `UInt64`; never registered as a
/// table): what turns an audience's people back into the rows only that party can map
/// to its own user ids.
pub fn rows_path(dir: &Path, party: &str) -> PathBuf {
    dir.join("joined")
        .join("rows")
        .join(format!("{party}.parquet"))
}

/// Rows per batch of a rows file.
const ROWS_BATCH: u32 = 1 << 20;

fn write_rows(
    staging: &Path,
    party: &str,
    records: u32,
    person: impl Fn(u32) -> u64,
) -> Result<()> {
    let dest = staging.join("rows").join(format!("{party}.parquet"));
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(ROW, DataType::UInt32, false),
        Field::new(PERSON, DataType::UInt64, false),
    ]));
    let file = std::fs::File::create(&dest).map_err(io(&dest))?;
    let mut w = ArrowWriter::try_new(file, schema.clone(), None)?;
    let mut start = 0u32;
    while start < records {
        let end = start.saturating_add(ROWS_BATCH).min(records);
        let rows: Vec<u32> = (start..end).collect();
        let persons: Vec<u64> = rows.iter().map(|r| person(*r)).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(datafusion::arrow::array::UInt32Array::from(rows)),
                Arc::new(UInt64Array::from(persons)),
            ],
        )?;
        w.write(&batch)?;
        start = end;
    }
    w.close()?;
    Ok(())
}

/// A networked view's rows of `party`'s identity table by person id (see
/// [`rows_path`]): for each person, the row of the party's record of them.
pub fn person_rows(dir: &Path, party: &str) -> Result<HashMap<u64, u32>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{UInt32Type, UInt64Type};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let path = rows_path(dir, party);
    let file = std::fs::File::open(&path).map_err(io(&path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut out = HashMap::new();
    for b in reader {
        let b = b?;
        let bad = || Error::Input {
            path: path.clone(),
            message: format!("not a rows file ({ROW} UInt32, {PERSON} UInt64)"),
        };
        let rows = b
            .column(0)
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(bad)?;
        let persons = b
            .column(1)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(bad)?;
        for i in 0..b.num_rows() {
            out.insert(persons.value(i), rows.value(i));
        }
    }
    Ok(out)
}

/// Replaces a shared batch's [`ROW`] column by the person id `person(row)`; a row the
/// member's identity table does not have is an error.
fn with_persons(
    batch: &RecordBatch,
    person: impl Fn(u32) -> Option<u64>,
) -> std::result::Result<RecordBatch, String> {
    let schema = person_schema(&batch.schema())?;
    let rows = batch
        .column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::UInt32Array>()
        .ok_or_else(|| format!("{ROW} is not UInt32"))?;
    let mut persons = Vec::with_capacity(rows.len());
    for i in 0..rows.len() {
        if rows.is_null(i) {
            return Err(format!("{ROW} is null"));
        }
        let row = rows.value(i);
        persons.push(person(row).ok_or_else(|| format!("row {row} is not a record"))?);
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(persons))];
    cols.extend(batch.columns().iter().skip(1).cloned());
    RecordBatch::try_new(schema, cols).map_err(|e| e.to_string())
}

/// The schema of a shared table with its [`ROW`] column replaced by the person id.
fn person_schema(
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> std::result::Result<datafusion::arrow::datatypes::SchemaRef, String> {
    match schema.fields().first() {
        Some(f) if f.name() == ROW && f.data_type() == &DataType::UInt32 => {}
        _ => return Err(format!("the first column is not {ROW} (UInt32)")),
    }
    let mut fields = vec![Field::new(PERSON, DataType::UInt64, true)];
    fields.extend(schema.fields().iter().skip(1).map(|f| f.as_ref().clone()));
    Ok(Arc::new(Schema::new(fields)))
}

/// Reads a built view's description from `DIR/joined/view.json`.
pub fn load(dir: &Path) -> Result<ViewInfo> {
    let path = dir.join("joined").join("view.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| Error::Input {
        path,
        message: e.to_string(),
    })
}

/// The people to leave out: linked people any of whose records was forgotten or is
/// flagged by its party's `opt_out_column`, and, per party, the ids of such records
/// linked to no one (their person id is only known while the party is written).
fn excluded(
    collab: &Collaboration,
    base: &Path,
    linked: &Linked,
    exclusions: &Exclusions,
) -> Result<(HashSet<u64>, Vec<HashSet<String>>)> {
    let mut people = HashSet::new();
    let mut unlinked = vec![HashSet::new(); collab.parties().len()];
    for (pi, party) in collab.parties().iter().enumerate() {
        let forgotten = exclusions.forgotten.get(&party.name);
        let flag = party.identity.opt_out_column.clone();
        if forgotten.is_none() && flag.is_none() {
            continue;
        }
        let id_path = base.join(&party.identity.path);
        let rid = party
            .identity
            .record_id
            .clone()
            .ok_or_else(|| Error::Internal("identity table without record_id".into()))?;
        let mut cols = vec![rid];
        cols.extend(flag);
        let mut reader = ColumnReader::open(&id_path, &cols)?;
        let mut row: u32 = 0;
        while let Some(batch) = reader.next_batch()? {
            for i in 0..batch[0].len() {
                let id = cell(&batch[0], i);
                let out = id.is_some_and(|id| forgotten.is_some_and(|f| f.contains(id)))
                    || batch.get(1).and_then(|c| cell(c, i)).is_some_and(truthy);
                if out {
                    match linked.person_of(pi, row) {
                        Some(p) => {
                            people.insert(u64::from(p));
                        }
                        None => {
                            if let Some(id) = id {
                                unlinked[pi].insert(id.to_string());
                            }
                        }
                    }
                }
                row += 1;
            }
        }
    }
    Ok((people, unlinked))
}

/// Keeps only rows whose first timestamp is within `days` before `now`.
fn retention_filter(ts: &str, days: u32, now: i64) -> Expr {
    let utc = DataType::Timestamp(TimeUnit::Second, Some("+00:00".into()));
    let cutoff = now - i64::from(days) * 86_400;
    Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(col(ts)), utc)).gt_eq(lit(
        ScalarValue::TimestampSecond(Some(cutoff), Some("+00:00".into())),
    ))
}

async fn write_tables(
    collab: &Collaboration,
    base: &Path,
    linked: &Linked,
    out: &Path,
    exclusions: &Exclusions,
) -> Result<(Vec<ViewTable>, u64)> {
    let ctx = SessionContext::new();
    let mut tables = Vec::new();
    let mut offset: u64 = 0;
    let (mut excluded_people, unlinked_out) = excluded(collab, base, linked, exclusions)?;
    for (pi, party) in collab.parties().iter().enumerate() {
        // Person of every record of the party's identity table, by record id.
        let id_path = base.join(&party.identity.path);
        let rid = party
            .identity
            .record_id
            .clone()
            .ok_or_else(|| Error::Internal("identity table without record_id".into()))?;
        let mut reader = ColumnReader::open(&id_path, std::slice::from_ref(&rid))?;
        let mut person_of: HashMap<String, u64> = HashMap::new();
        let mut row: u32 = 0;
        let records = out.join("records").join(format!("{}.parquet", party.name));
        if let Some(parent) = records.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let records_schema = Arc::new(Schema::new(vec![
            Field::new("record_id", DataType::Utf8, false),
            Field::new(PERSON, DataType::UInt64, false),
            Field::new("suppressed", DataType::Boolean, false),
        ]));
        let file = std::fs::File::create(&records).map_err(io(&records))?;
        let mut records_writer = ArrowWriter::try_new(file, records_schema.clone(), None)?;
        while let Some(cols) = reader.next_batch()? {
            let ids = &cols[0];
            let (mut rid_col, mut person_col, mut supp_col) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..ids.len() {
                let person = person_id(linked, pi, offset, row);
                if person >= UNLINKED
                    && cell(ids, i).is_some_and(|id| unlinked_out[pi].contains(id))
                {
                    excluded_people.insert(person);
                }
                if let Some(id) = cell(ids, i) {
                    person_of.insert(id.to_string(), person);
                    rid_col.push(id.to_string());
                    person_col.push(person);
                    supp_col.push(excluded_people.contains(&person));
                }
                row += 1;
            }
            let batch = RecordBatch::try_new(
                records_schema.clone(),
                vec![
                    Arc::new(StringArray::from(rid_col)),
                    Arc::new(UInt64Array::from(person_col)),
                    Arc::new(BooleanArray::from(supp_col)),
                ],
            )?;
            records_writer.write(&batch)?;
        }
        records_writer.close()?;
        offset += u64::from(row);
        for t in party.all_tables() {
            let name = format!("{}.{}", party.name, t.name);
            let src = base.join(&t.path);
            let keep: Vec<String> = t
                .dimensions
                .iter()
                .chain(&t.measures)
                .chain(&t.timestamps)
                .cloned()
                .collect();
            if keep.iter().any(|c| c == PERSON) {
                return Err(Error::Input {
                    path: src,
                    message: format!(
                        "{name}: a column is named {PERSON:?}, which the joined view reserves for the person id"
                    ),
                });
            }
            let mut read: Vec<String> = keep.clone();
            if let Some(r) = &t.record_id {
                read.insert(0, r.clone());
            }
            let path_str = src.to_string_lossy().to_string();
            let df = if t.path.ends_with(".csv") {
                ctx.read_csv(path_str, CsvReadOptions::new()).await
            } else {
                ctx.read_parquet(path_str, ParquetReadOptions::default())
                    .await
            }
            .map_err(|e| Error::Input {
                path: src.clone(),
                message: e.to_string(),
            })?;
            // The record id as it is; every declared column as a node's import types it
            // (Role::data_type), so that local mode's view equals a host's.
            let typed: Vec<Expr> = read
                .iter()
                .map(|c| {
                    let role = if t.dimensions.contains(c) {
                        Role::Dimension
                    } else if t.measures.contains(c) {
                        Role::Measure
                    } else if t.timestamps.contains(c) {
                        Role::Timestamp
                    } else {
                        return col(c.as_str());
                    };
                    Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(col(c.as_str())),
                        role.data_type(),
                    ))
                    .alias(c.as_str())
                })
                .collect();
            let df = df.select(typed).map_err(|e| Error::Input {
                path: src.clone(),
                message: format!("{name}: {e}"),
            })?;
            let (df, total) = match (t.retention_days, t.timestamps.first()) {
                (Some(days), Some(ts)) => {
                    let total = df.clone().count().await? as u64;
                    let kept = df
                        .filter(retention_filter(ts, days, exclusions.now))
                        .map_err(|e| Error::Input {
                            path: src.clone(),
                            message: format!("{name}: retention on {ts}: {e}"),
                        })?;
                    (kept, Some(total))
                }
                _ => (df, None),
            };
            let mut stream = df.execute_stream().await?;
            let rel = PathBuf::from(&party.name).join(format!("{}.parquet", t.name));
            let dest = out.join(&rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let file = std::fs::File::create(&dest).map_err(io(&dest))?;
            let in_schema = stream.schema();
            let out_schema = if t.record_id.is_some() {
                let mut fields = vec![Field::new(PERSON, DataType::UInt64, true)];
                fields.extend(
                    in_schema
                        .fields()
                        .iter()
                        .skip(1)
                        .map(|f| f.as_ref().clone()),
                );
                Arc::new(Schema::new(fields))
            } else {
                in_schema
            };
            let mut writer = ArrowWriter::try_new(file, out_schema.clone(), None)?;
            let (mut rows, mut orphans, mut excluded_rows) = (0u64, 0u64, 0u64);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let out_batch = if t.record_id.is_some() {
                    let ids = cast(batch.column(0), &DataType::Utf8)?;
                    let ids = ids
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::StringArray>()
                        .ok_or_else(|| Error::Internal("record id cast".into()))?;
                    let persons: UInt64Array = (0..ids.len())
                        .map(|i| {
                            if ids.is_null(i) {
                                None
                            } else {
                                person_of.get(ids.value(i)).copied()
                            }
                        })
                        .collect();
                    let known: BooleanArray = (0..persons.len())
                        .map(|i| Some(persons.is_valid(i)))
                        .collect();
                    let allowed: BooleanArray = (0..persons.len())
                        .map(|i| {
                            Some(
                                persons.is_valid(i) && !excluded_people.contains(&persons.value(i)),
                            )
                        })
                        .collect();
                    let mut cols: Vec<ArrayRef> = vec![Arc::new(persons)];
                    cols.extend(batch.columns().iter().skip(1).cloned());
                    let b = RecordBatch::try_new(out_schema.clone(), cols)?;
                    let found = known.true_count();
                    let kept = filter_record_batch(&b, &allowed)?;
                    orphans += (b.num_rows() - found) as u64;
                    excluded_rows += (found - kept.num_rows()) as u64;
                    kept
                } else {
                    batch
                };
                rows += out_batch.num_rows() as u64;
                writer.write(&out_batch)?;
            }
            writer.close()?;
            let expired_rows =
                total.map_or(0, |t| t.saturating_sub(rows + orphans + excluded_rows));
            tables.push(ViewTable {
                name,
                path: rel.to_string_lossy().to_string(),
                rows,
                orphan_rows: orphans,
                excluded_rows,
                expired_rows,
            });
        }
    }
    Ok((tables, excluded_people.len() as u64))
}

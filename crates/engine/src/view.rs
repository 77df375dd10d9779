//! The joined view: every party's tables with record ids and identifiers replaced by a
//! pseudonymous person id shared by all records of one person, and only the columns
//! the spec declares (dimensions, measures, timestamps). This is what the host queries.
//!
//! In local mode (one process holds every party's files) the view is built by running
//! the match and writing each table as Parquet under `DIR/joined/<party>/<table>.parquet`.
//! The whole view is written in a temporary folder and renamed into place, so a
//! half-built view is never seen; it is rebuilt only when the spec or a file changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use futures::StreamExt;
use jingteng_match::read::{ColumnReader, cell};
use jingteng_match::{MatchReport, Progress, Source};
use jingteng_psi::{Collaboration, Linked};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::PERSON;
use crate::{Error, Result};

/// Person ids at or above this are records linked to no other party's.
const UNLINKED: u64 = 1 << 32;

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
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Hash of the spec text and every input file's path, size and modification time.
fn fingerprint(spec_text: &str, collab: &Collaboration, base: &Path) -> Result<String> {
    let mut h = Sha256::new();
    h.update(spec_text.as_bytes());
    for p in collab.parties() {
        for t in std::iter::once(&p.identity).chain(&p.tables) {
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
/// match's rows.
pub async fn build_local(
    spec_path: &Path,
    dir: &Path,
    progress: Arc<dyn Progress + Send>,
) -> Result<ViewInfo> {
    let text = std::fs::read_to_string(spec_path).map_err(io(spec_path))?;
    let collab = jingteng_match::read_spec(spec_path)?;
    let base = spec_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let fp = fingerprint(&text, &collab, &base)?;
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
    let tables = write_tables(&collab, &base, &linked, &staging).await?;
    let info = ViewInfo {
        collaboration: collab.id().to_string(),
        fingerprint: fp,
        tables,
        report,
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
}

/// The columns of `party.table` a member shares, in the order it sends them (after
/// [`ROW`] when the table has a record id): dimensions, measures, timestamps.
pub fn shared_columns(collab: &Collaboration, party: &str, table: &str) -> Option<Vec<String>> {
    let p = collab.parties().iter().find(|p| p.name == party)?;
    let t = std::iter::once(&p.identity)
        .chain(&p.tables)
        .find(|t| t.name == table)?;
    Some(
        t.dimensions
            .iter()
            .chain(&t.measures)
            .chain(&t.timestamps)
            .cloned()
            .collect(),
    )
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
    for (pi, party) in collab.parties().iter().enumerate() {
        let records = *linked
            .records
            .get(pi)
            .ok_or_else(|| Error::Internal(format!("no record count for party {pi}")))?;
        for t in std::iter::once(&party.identity).chain(&party.tables) {
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
                            Some(
                                linked
                                    .person_of(pi, row)
                                    .map_or(UNLINKED + offset + u64::from(row), u64::from),
                            )
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
            tables.push(ViewTable {
                name,
                path: rel.to_string_lossy().to_string(),
                rows,
                orphan_rows: sent.orphan_rows,
            });
        }
        offset += u64::from(records);
    }
    let info = ViewInfo {
        collaboration: collab.id().to_string(),
        fingerprint: fingerprint.to_string(),
        tables,
        report,
    };
    publish(dir, &staging, &info)?;
    Ok(info)
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

async fn write_tables(
    collab: &Collaboration,
    base: &Path,
    linked: &Linked,
    out: &Path,
) -> Result<Vec<ViewTable>> {
    let ctx = SessionContext::new();
    let mut tables = Vec::new();
    let mut offset: u64 = 0;
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
        while let Some(cols) = reader.next_batch()? {
            let ids = &cols[0];
            for i in 0..ids.len() {
                let person = linked
                    .person_of(pi, row)
                    .map_or(UNLINKED + offset + u64::from(row), u64::from);
                if let Some(id) = cell(ids, i) {
                    person_of.insert(id.to_string(), person);
                }
                row += 1;
            }
        }
        offset += u64::from(row);
        for t in std::iter::once(&party.identity).chain(&party.tables) {
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
            let refs: Vec<&str> = read.iter().map(String::as_str).collect();
            let df = df.select_columns(&refs).map_err(|e| Error::Input {
                path: src.clone(),
                message: format!("{name}: {e}"),
            })?;
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
            let (mut rows, mut orphans) = (0u64, 0u64);
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
                    let mut cols: Vec<ArrayRef> = vec![Arc::new(persons)];
                    cols.extend(batch.columns().iter().skip(1).cloned());
                    let b = RecordBatch::try_new(out_schema.clone(), cols)?;
                    let kept = filter_record_batch(&b, &known)?;
                    orphans += (b.num_rows() - kept.num_rows()) as u64;
                    kept
                } else {
                    batch
                };
                rows += out_batch.num_rows() as u64;
                writer.write(&out_batch)?;
            }
            writer.close()?;
            tables.push(ViewTable {
                name,
                path: rel.to_string_lossy().to_string(),
                rows,
                orphan_rows: orphans,
            });
        }
    }
    Ok(tables)
}

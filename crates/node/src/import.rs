//! `jingteng import`: a party's CSV or Parquet file into the node's tables, typed by
//! the roles the collaboration spec gives its columns, as a new version.
//!
//! Types by role: the record id, identifier columns, device-type columns and dimensions
//! are text; measures are 64-bit integers (money in fen, counts); timestamps are
//! instants (RFC 3339 with an offset, stored in UTC). Columns the spec does not list are
//! not imported. A value that does not fit its type is an error naming the file, the
//! line and the column; an import that fails leaves nothing behind, and each import of
//! a table adds a version instead of replacing one.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use jingteng_match::read::{ColumnReader, cell};
use jingteng_psi::{Collaboration, DeviceKinds};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Error, NodeDir, Result, file_err, hex};

/// What an import made.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    /// `party/table`.
    pub dataset: String,
    /// The new version.
    pub version: i64,
    /// Rows imported.
    pub rows: u64,
    /// Columns and their types.
    pub columns: Vec<(String, String)>,
    /// Where the version is stored, relative to the node directory.
    pub path: String,
    /// SHA-256 of the stored file.
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Instant,
}

impl Kind {
    fn data_type(self) -> DataType {
        use jingteng_engine::policy::Role;
        match self {
            Kind::Text => Role::Dimension.data_type(),
            Kind::Integer => Role::Measure.data_type(),
            Kind::Instant => Role::Timestamp.data_type(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Integer => "integer",
            Kind::Instant => "timestamp",
        }
    }
}

/// Imports table `table` of the node's party, as the spec at `spec_path` describes it,
/// from `file` (default: the spec's path for it, relative to the spec).
pub fn import(
    node: &NodeDir,
    spec_path: &Path,
    table: &str,
    file: Option<&Path>,
) -> Result<Imported> {
    let text = fs::read_to_string(spec_path).map_err(|e| file_err(spec_path, e))?;
    let collab = Collaboration::parse(&text).map_err(|e| file_err(spec_path, e))?;
    let party_name = &node.config().party;
    let party = collab
        .parties()
        .iter()
        .find(|p| &p.name == party_name)
        .ok_or_else(|| {
            file_err(
                spec_path,
                format!("this node is party {party_name:?}, which the spec does not list"),
            )
        })?;
    let spec_table = party
        .all_tables()
        .find(|t| t.name == table)
        .ok_or_else(|| {
            let names: Vec<&str> = party.all_tables().map(|t| t.name.as_str()).collect();
            file_err(
                spec_path,
                format!(
                    "party {party_name:?} has no table {table:?}; it has: {}",
                    names.join(", ")
                ),
            )
        })?;
    let source: PathBuf = match file {
        Some(f) => f.to_path_buf(),
        None => spec_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&spec_table.path),
    };

    // Columns in a fixed order: record id, identifiers (and device types), dimensions,
    // measures, timestamps.
    let mut columns: Vec<(String, Kind)> = Vec::new();
    let mut push = |c: &str, k: Kind| {
        if !columns.iter().any(|(n, _)| n == c) {
            columns.push((c.to_string(), k));
        }
    };
    if let Some(r) = &spec_table.record_id {
        push(r, Kind::Text);
    }
    for i in &spec_table.identifiers {
        push(&i.column, Kind::Text);
        if let Some(DeviceKinds::Column(c)) = &i.devices {
            push(c, Kind::Text);
        }
    }
    spec_table
        .dimensions
        .iter()
        .for_each(|c| push(c, Kind::Text));
    spec_table
        .measures
        .iter()
        .for_each(|c| push(c, Kind::Integer));
    spec_table
        .timestamps
        .iter()
        .for_each(|c| push(c, Kind::Instant));
    // The opt-out flag stays at the node: it leaves records out of a networked match.
    if let Some(c) = &spec_table.opt_out_column {
        push(c, Kind::Text);
    }
    let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
    let schema: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, k)| Field::new(n, k.data_type(), true))
            .collect::<Vec<_>>(),
    ));

    let dataset = format!("{party_name}/{table}");
    let mut catalog = node.catalog()?;
    let version = catalog
        .datasets()?
        .iter()
        .find(|d| d.name == dataset)
        .map_or(1, |d| d.version + 1);
    let rel = format!(
        "{}/{party_name}/{table}/v{version}.parquet",
        node.config().tables
    );
    let dest = node.dir().join(&rel);
    let parent = dest
        .parent()
        .ok_or_else(|| file_err(&dest, "has no parent"))?;
    fs::create_dir_all(parent).map_err(|e| file_err(parent, e))?;
    let partial = dest.with_extension("parquet.partial");

    let written = write_version(
        &source,
        &names,
        &columns,
        &schema,
        spec_table.record_id.as_deref(),
        &partial,
    );
    let rows = match written {
        Ok(rows) => rows,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    let sha256 = hex(&Sha256::digest(
        fs::read(&partial).map_err(|e| file_err(&partial, e))?,
    ));
    fs::rename(&partial, &dest).map_err(|e| file_err(&dest, e))?;
    let schema_json = serde_json::to_string(
        &columns
            .iter()
            .map(|(n, k)| (n.clone(), k.name()))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| Error::Internal(e.to_string()))?;
    let recorded = catalog.add_dataset_version(
        party_name,
        &dataset,
        &rel,
        rows as i64,
        &schema_json,
        &source.display().to_string(),
        &sha256,
    );
    match recorded {
        Ok(v) => Ok(Imported {
            dataset,
            version: v.version,
            rows,
            columns: columns
                .iter()
                .map(|(n, k)| (n.clone(), k.name().to_string()))
                .collect(),
            path: rel,
            sha256,
        }),
        Err(e) => {
            // The catalog did not take it: the file must not stay either.
            let _ = fs::remove_file(&dest);
            Err(e.into())
        }
    }
}

/// Reads `source`, types its columns and writes them as Parquet to `out`.
fn write_version(
    source: &Path,
    names: &[String],
    columns: &[(String, Kind)],
    schema: &SchemaRef,
    record_id: Option<&str>,
    out: &Path,
) -> Result<u64> {
    let input = |message: String| Error::File {
        path: source.to_path_buf(),
        message,
    };
    let mut reader =
        ColumnReader::open(source, names).map_err(|e| input(strip_path(&e.to_string(), source)))?;
    let file = File::create(out).map_err(|e| file_err(out, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(BufWriter::new(file), schema.clone(), Some(props))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let is_csv = source.extension().is_some_and(|e| e == "csv");
    let mut rows: u64 = 0;
    while let Some(batch) = reader
        .next_batch()
        .map_err(|e| input(strip_path(&e.to_string(), source)))?
    {
        let n = batch.first().map_or(0, |c| c.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
        for ((name, kind), text) in columns.iter().zip(&batch) {
            let where_ = |i: usize| {
                if is_csv {
                    format!("line {}, column {name:?}", rows + i as u64 + 2)
                } else {
                    format!("row {}, column {name:?}", rows + i as u64 + 1)
                }
            };
            if Some(name.as_str()) == record_id
                && let Some(i) = (0..n).find(|&i| cell(text, i).is_none_or(|v| v.trim().is_empty()))
            {
                return Err(input(format!("{}: empty record id", where_(i))));
            }
            let array: ArrayRef = match kind {
                Kind::Text => Arc::new(text.clone()),
                Kind::Integer | Kind::Instant => {
                    let trimmed: StringArray = text
                        .iter()
                        .map(|v| v.map(str::trim).filter(|v| !v.is_empty()))
                        .collect();
                    let typed = cast(&trimmed, &kind.data_type())
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    // A value that was there but did not convert is named.
                    if let Some(i) = (0..n).find(|&i| trimmed.is_valid(i) && typed.is_null(i)) {
                        return Err(input(format!(
                            "{}: {:?} is not {}",
                            where_(i),
                            trimmed.value(i),
                            match kind {
                                Kind::Integer => "a whole number",
                                _ =>
                                    "a timestamp with a time zone (RFC 3339, e.g. 2026-03-24T09:21:39+08:00)",
                            }
                        )));
                    }
                    typed
                }
            };
            arrays.push(array);
        }
        let batch = RecordBatch::try_new(schema.clone(), arrays)
            .map_err(|e| Error::Internal(e.to_string()))?;
        writer.write(&batch).map_err(|e| file_err(out, e))?;
        rows += n as u64;
    }
    writer.close().map_err(|e| file_err(out, e))?;
    Ok(rows)
}

/// Reader errors start with the file's path, which the caller adds again.
fn strip_path(message: &str, path: &Path) -> String {
    message
        .strip_prefix(&format!("{}: ", path.display()))
        .unwrap_or(message)
        .to_string()
}

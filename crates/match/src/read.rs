//! Reading a party's table: only the columns needed, as text, in
//! Arrow batches, from CSV or Parquet (matching and import both read this way).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{Error, Result};

/// Rows per batch read and processed together.
pub const BATCH_ROWS: usize = 8_192;

/// Batches of the requested columns, as `StringArray`s in the requested order.
pub struct ColumnReader {
    path: PathBuf,
    inner:
        Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow::error::ArrowError>> + Send>,
    /// Position of each requested column in the batches the inner reader yields.
    positions: Vec<usize>,
    /// Data rows read so far (for line numbers in errors).
    rows: u64,
    csv: bool,
}

impl ColumnReader {
    /// Opens `path` (`.csv` with a header line, or `.parquet`) for `columns`.
    pub fn open(path: &Path, columns: &[String]) -> Result<Self> {
        let input = |message: String| Error::Input {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let is_csv = path.extension().is_some_and(|e| e == "csv");
        let (inner, positions): (Box<dyn Iterator<Item = _> + Send>, Vec<usize>) = if is_csv {
            let header = csv::Reader::from_path(path)
                .and_then(|mut r| r.headers().cloned())
                .map_err(|e| input(format!("cannot read the header line: {e}")))?;
            let names: Vec<String> = header.iter().map(str::to_string).collect();
            let (projection, positions) = project(path, &names, columns)?;
            // Every column as text: identifiers are compared as written.
            let schema = Arc::new(Schema::new(
                names
                    .iter()
                    .map(|n| Field::new(n, DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            ));
            let reader = arrow::csv::ReaderBuilder::new(schema)
                .with_header(true)
                .with_batch_size(BATCH_ROWS)
                .with_projection(projection)
                .build(file)
                .map_err(|e| input(e.to_string()))?;
            (Box::new(reader), positions)
        } else {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| input(format!("not a readable Parquet file: {e}")))?;
            let names: Vec<String> = builder
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let (projection, positions) = project(path, &names, columns)?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), projection);
            let reader = builder
                .with_projection(mask)
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| input(e.to_string()))?;
            (Box::new(reader), positions)
        };
        Ok(Self {
            path: path.to_path_buf(),
            inner,
            positions,
            rows: 0,
            csv: is_csv,
        })
    }

    /// The next batch: one `StringArray` per requested column.
    pub fn next_batch(&mut self) -> Result<Option<Vec<StringArray>>> {
        let Some(batch) = self.inner.next() else {
            return Ok(None);
        };
        let batch = batch.map_err(|e| Error::Input {
            path: self.path.clone(),
            message: if self.csv {
                // Arrow counts lines from the first data row; say which lines were read.
                format!(
                    "{e} (in the batch of data lines from line {}, counting the header as line 1)",
                    self.rows + 2
                )
            } else {
                e.to_string()
            },
        })?;
        self.rows += batch.num_rows() as u64;
        let columns = self
            .positions
            .iter()
            .map(|&p| to_strings(batch.column(p)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(columns))
    }
}

/// The file columns to read (sorted, once each) and, for every wanted column, its
/// position among them.
fn project(path: &Path, names: &[String], wanted: &[String]) -> Result<(Vec<usize>, Vec<usize>)> {
    let indices = find(path, names, wanted)?;
    let mut projection = indices.clone();
    projection.sort_unstable();
    projection.dedup();
    let positions = indices
        .iter()
        .map(|i| projection.iter().position(|p| p == i).unwrap_or(0))
        .collect();
    Ok((projection, positions))
}

fn find(path: &Path, names: &[String], wanted: &[String]) -> Result<Vec<usize>> {
    wanted
        .iter()
        .map(|w| {
            names
                .iter()
                .position(|n| n == w)
                .ok_or_else(|| Error::Input {
                    path: path.to_path_buf(),
                    message: format!("no column {w:?}; the file has: {}", names.join(", ")),
                })
        })
        .collect()
}

fn to_strings(a: &ArrayRef) -> Result<StringArray> {
    let utf8 = if a.data_type() == &DataType::Utf8 {
        a.clone()
    } else {
        cast(a, &DataType::Utf8).map_err(|e| Error::Internal(e.to_string()))?
    };
    utf8.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| Error::Internal("cast to Utf8 did not give a StringArray".into()))
}

/// A cell's text, or `None` where it is null.
pub fn cell(a: &StringArray, row: usize) -> Option<&str> {
    if a.is_null(row) {
        None
    } else {
        Some(a.value(row))
    }
}

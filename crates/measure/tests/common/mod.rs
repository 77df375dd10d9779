//! A synthetic world with its joined view, and a plain-Rust reader of the view's
//! Parquet files for the reference implementations (no DataFusion query involved).

#![allow(
    dead_code,
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use jingteng_catalog::Catalog;
use jingteng_engine::datafusion::arrow::array::{Array, AsArray, RecordBatch};
use jingteng_engine::datafusion::arrow::compute::cast;
use jingteng_engine::datafusion::arrow::datatypes::{DataType, Int64Type};
use jingteng_engine::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use jingteng_engine::{Engine, Limits, ViewInfo, view};

pub struct World {
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub state: PathBuf,
    pub info: ViewInfo,
    pub collab: jingteng_psi::Collaboration,
    pub min_people: u64,
}

/// Generates a world of `people` (seed `seed`) with every party in `mode` and at least
/// `min_people` per released row, and builds its joined view.
pub async fn world(seed: u64, people: u64, mode: &str, min_people: u64) -> World {
    world_with(seed, people, mode, min_people, 1, None).await
}

/// As [`world`], with `media` media parties and, if given, every party's ε per query.
pub async fn world_with(
    seed: u64,
    people: u64,
    mode: &str,
    min_people: u64,
    media: u8,
    epsilon: Option<f64>,
) -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("world");
    let config = jingteng_synth::Config {
        seed,
        scale: people.to_string().parse().unwrap(),
        force: false,
        media,
    };
    jingteng_synth::generate(&config, &root, &|_, _| {}).unwrap();
    let spec = root.join("collab.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("mode = \"dp\"") && text.contains("min_people = 50"));
    std::fs::write(
        &spec,
        text.replace("mode = \"dp\"", &format!("mode = \"{mode}\""))
            .replace("min_people = 50", &format!("min_people = {min_people}"))
            .replace(
                "epsilon = 0.5",
                &format!("epsilon = {}", epsilon.unwrap_or(0.5)),
            ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let info = view::build_local(&spec, &state, Arc::new(|_: &str, _: u64| {}))
        .await
        .unwrap();
    let collab = jingteng_match::read_spec(&spec).unwrap();
    World {
        _dir: dir,
        root,
        state,
        info,
        collab,
        min_people,
    }
}

impl World {
    pub async fn engine(&self) -> Engine {
        Engine::open(
            &self.collab,
            &self.state,
            &self.info,
            Catalog::in_memory().unwrap(),
            Limits::default(),
        )
        .await
        .unwrap()
    }

    pub fn truth(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.root.join("truth.json")).unwrap())
            .unwrap()
    }

    /// A table of the joined view, read straight from its Parquet file.
    pub fn table(&self, name: &str) -> Table {
        let t = self.info.tables.iter().find(|t| t.name == name).unwrap();
        let path = self.state.join("joined").join(&t.path);
        let file = std::fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        Table(reader.map(|b| b.unwrap()).collect())
    }
}

/// Rows of a view table, read column by column.
pub struct Table(Vec<RecordBatch>);

impl Table {
    fn column(&self, name: &str, to: &DataType) -> Vec<Arc<dyn Array>> {
        self.0
            .iter()
            .map(|b| {
                let c = b
                    .column_by_name(name)
                    .unwrap_or_else(|| panic!("no {name}"));
                cast(c, to).unwrap()
            })
            .collect()
    }

    /// A column as integers (timestamps as seconds, dates as days); null → None.
    pub fn ints(&self, name: &str) -> Vec<Option<i64>> {
        let to = match self.0.first().map(|b| {
            b.schema()
                .field_with_name(name)
                .unwrap()
                .data_type()
                .clone()
        }) {
            Some(DataType::Date32) => DataType::Int32,
            // Dates are dimensions, so text in the view: days since the epoch.
            Some(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => DataType::Date32,
            // Timestamps are milliseconds in the view: seconds.
            Some(DataType::Timestamp(_, tz)) => DataType::Timestamp(
                jingteng_engine::datafusion::arrow::datatypes::TimeUnit::Second,
                tz,
            ),
            _ => DataType::Int64,
        };
        self.column(name, &to)
            .iter()
            .flat_map(|a| {
                let a = cast(a, &DataType::Int64).unwrap();
                let a = a.as_primitive::<Int64Type>().clone();
                (0..a.len())
                    .map(|i| a.is_valid(i).then(|| a.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A column as text; null → "".
    pub fn strings(&self, name: &str) -> Vec<String> {
        self.column(name, &DataType::Utf8)
            .iter()
            .flat_map(|a| {
                let a = a.as_string::<i32>().clone();
                (0..a.len())
                    .map(|i| {
                        if a.is_valid(i) {
                            a.value(i).to_string()
                        } else {
                            String::new()
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Campaign id → brand, start day and end day (days since 1970-01-01).
pub fn campaigns(w: &World) -> HashMap<String, (String, i64, i64)> {
    let t = w.table("social.campaigns");
    let (ids, brands) = (t.strings("campaign_id"), t.strings("brand"));
    let (start, end) = (t.ints("start_date"), t.ints("end_date"));
    (0..t.len())
        .map(|i| {
            (
                ids[i].clone(),
                (brands[i].clone(), start[i].unwrap(), end[i].unwrap()),
            )
        })
        .collect()
}

//! Data rights at a node: the records of its own party that a person had forgotten
//! (`jingteng forget --collab ID --dir NODE`, in this node's catalog) or that the
//! identity table's `opt_out_column` flags stay out of every networked match. The node
//! does not blind their identifiers and does not share their rows (nor the rows of its
//! other tables about them): nothing about them leaves the node, and the host, the
//! report and the joined view never see them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::DataType;
use jingteng_psi::Collaboration;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{Error, NodeDir, Result, file_err};

/// What this node leaves out of a match.
#[derive(Debug, Default)]
pub(crate) struct LeftOut {
    /// Record ids left out (forgotten or flagged), so that the rows of the party's
    /// other tables about them stay home too.
    pub(crate) ids: HashSet<String>,
    /// Records of the identity table left out.
    pub(crate) records: u64,
}

/// Whether an opt-out flag is set: `true`, `1`, `yes`, `y`, any case (as local mode).
fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "y"
    )
}

/// The identity table a match reads: `identity` itself when this node's party has no
/// record to leave out, else a copy without them written to `work/identity.parquet`
/// (a private folder the caller removes when the contribution is over).
pub(crate) fn identity_for_match(
    node: &NodeDir,
    collab: &Collaboration,
    identity: &Path,
    work: &Path,
) -> Result<(PathBuf, LeftOut)> {
    let me = &node.config().party;
    let party = collab
        .parties()
        .iter()
        .find(|p| &p.name == me)
        .ok_or_else(|| Error::Contract("this node is not a party of the spec".into()))?;
    let forgotten: HashSet<String> = node
        .catalog()?
        .forget_requests(collab.id())?
        .into_iter()
        .filter(|r| &r.party == me)
        .map(|r| r.record_id)
        .collect();
    let flag = party.identity.opt_out_column.as_deref();
    let mut left = LeftOut::default();
    if forgotten.is_empty() && flag.is_none() {
        return Ok((identity.to_path_buf(), left));
    }
    let rid = party
        .identity
        .record_id
        .as_deref()
        .ok_or_else(|| Error::Contract(format!("{me}'s identity table has no record_id")))?;
    let file = std::fs::File::open(identity).map_err(|e| file_err(identity, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(65_536).build())
        .map_err(|e| file_err(identity, e))?;
    crate::private_dir(work)?;
    let dest = work.join("identity.parquet");
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    for batch in reader {
        let batch = batch.map_err(|e| file_err(identity, e))?;
        let text = |name: &str| -> Result<StringArray> {
            let col = batch.column_by_name(name).ok_or_else(|| {
                file_err(
                    identity,
                    format!("no column {name}: import the table again (`jingteng import`)"),
                )
            })?;
            let col = cast(col, &DataType::Utf8)?;
            col.as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| Error::Internal(format!("{name} as text")))
        };
        let ids = text(rid)?;
        let flags = flag.map(text).transpose()?;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|i| {
                let id = ids.is_valid(i).then(|| ids.value(i));
                let out = id.is_some_and(|id| forgotten.contains(id))
                    || flags
                        .as_ref()
                        .is_some_and(|f| f.is_valid(i) && truthy(f.value(i)));
                if out {
                    left.records += 1;
                    if let Some(id) = id {
                        left.ids.insert(id.to_string());
                    }
                }
                Some(!out)
            })
            .collect();
        let kept = filter_record_batch(&batch, &keep)?;
        if writer.is_none() {
            let f = std::fs::File::create(&dest).map_err(|e| file_err(&dest, e))?;
            writer = Some(
                ArrowWriter::try_new(f, batch.schema(), None).map_err(|e| file_err(&dest, e))?,
            );
        }
        if let Some(w) = writer.as_mut() {
            w.write(&kept).map_err(|e| file_err(&dest, e))?;
        }
    }
    if let Some(w) = writer {
        w.close().map_err(|e| file_err(&dest, e))?;
    }
    if left.records == 0 {
        let _ = std::fs::remove_file(&dest);
        return Ok((identity.to_path_buf(), left));
    }
    Ok((dest, left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::RecordBatch;
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn forgotten_and_flagged_records_are_left_out_of_the_identity_table() {
        let tmp = tempfile::tempdir().unwrap();
        let node_dir = tmp.path().join("brand");
        crate::init(&node_dir, "brand").unwrap();
        let node = NodeDir::open(&node_dir).unwrap();
        let spec = r#"
[collaboration]
id = "c1"
host = "retail"

[[party]]
name = "retail"
[[party.table]]
name = "users"
path = "retail.csv"
record_id = "member_id"
[[party.table.identifier]]
column = "phone"
type = "phone"

[[party]]
name = "brand"
[[party.table]]
name = "crm"
path = "crm.csv"
record_id = "customer_id"
dimensions = ["tier"]
opt_out_column = "opted_out"
[[party.table.identifier]]
column = "phone"
type = "phone"
"#;
        let collab = Collaboration::parse(spec).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, true),
            Field::new("phone", DataType::Utf8, true),
            Field::new("opted_out", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["c1", "c2", "c3", "c4"])),
                Arc::new(StringArray::from(vec!["1", "2", "3", "4"])),
                Arc::new(StringArray::from(vec![
                    Some("false"),
                    Some("TRUE"),
                    None,
                    Some("no"),
                ])),
            ],
        )
        .unwrap();
        let identity = tmp.path().join("crm.parquet");
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(&identity).unwrap(),
            schema.clone(),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let work = tmp.path().join("work");

        // Flagged only.
        let (path, left) = identity_for_match(&node, &collab, &identity, &work).unwrap();
        assert_eq!(left.records, 1);
        assert_eq!(left.ids, HashSet::from(["c2".to_string()]));
        let rows: Vec<String> = read_ids(&path);
        assert_eq!(rows, ["c1", "c3", "c4"]);

        // And one forgotten with `jingteng forget` at this node (another party's
        // request, or another collaboration's, changes nothing here).
        let mut catalog = node.catalog().unwrap();
        catalog
            .record_forget("c1", "brand", "c4", "delete")
            .unwrap();
        catalog
            .record_forget("c1", "retail", "c1", "opt-out")
            .unwrap();
        catalog
            .record_forget("c2", "brand", "c1", "opt-out")
            .unwrap();
        drop(catalog);
        let (path, left) = identity_for_match(&node, &collab, &identity, &work).unwrap();
        assert_eq!(left.records, 2);
        assert_eq!(read_ids(&path), ["c1", "c3"]);
    }

    fn read_ids(path: &Path) -> Vec<String> {
        let file = std::fs::File::open(path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut out = Vec::new();
        for b in reader {
            let b = b.unwrap();
            let ids = b
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            out.extend((0..ids.len()).map(|i| ids.value(i).to_string()));
        }
        out
    }
}

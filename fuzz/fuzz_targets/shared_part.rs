//! Any bytes as a part of a table a member shares for the joined view (an Arrow IPC
//! stream the host checks against the spec before keeping it): accepted with its rows
//! counted, or refused with a reason — never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const SPEC: &str = include_str!("../seeds/collab.toml");

/// The schema of the synthetic world's `social.exposures` (a row id, dimensions and a
/// timestamp).
fn schema() -> &'static jingteng_engine::datafusion::arrow::datatypes::SchemaRef {
    static SCHEMA: OnceLock<jingteng_engine::datafusion::arrow::datatypes::SchemaRef> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let collab = jingteng_psi::Collaboration::parse(SPEC).expect("the seed spec parses");
        jingteng_node::shared_part_schema(&collab, "social", "exposures")
            .expect("social.exposures is in the seed spec")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = jingteng_node::check_shared_part(schema(), data);
});

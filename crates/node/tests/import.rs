//! `jingteng import`: typed, versioned, atomic; bad values named by file, line, column.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use jingteng_node::{NodeDir, import, init};

fn world(dir: &Path) {
    let config = jingteng_synth::Config {
        seed: 5,
        scale: "tiny".parse().unwrap(),
        force: false,
        media: 1,
    };
    jingteng_synth::generate(&config, dir, &|_, _| {}).unwrap();
}

#[test]
fn import_types_versions_and_audits() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("world");
    world(&w);
    init(&tmp.path().join("retail"), "retail").unwrap();
    let node = NodeDir::open(&tmp.path().join("retail")).unwrap();
    let spec = w.join("collab.toml");

    let v1 = import(&node, &spec, "orders", None).unwrap();
    assert_eq!(v1.dataset, "retail/orders");
    assert_eq!(v1.version, 1);
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.join("truth.json")).unwrap()).unwrap();
    assert!(v1.rows > 0);
    assert!(
        v1.columns
            .contains(&("amount_fen".to_string(), "integer".to_string()))
    );
    assert!(
        v1.columns
            .contains(&("ts".to_string(), "timestamp".to_string()))
    );
    assert!(
        !v1.columns.iter().any(|(c, _)| c == "order_id"),
        "unlisted columns stay out"
    );
    assert!(node.dir().join(&v1.path).exists());

    // From CSV too, as a second version.
    let v2 = import(&node, &spec, "orders", Some(&w.join("retail/orders.csv"))).unwrap();
    assert_eq!((v2.version, v2.rows), (2, v1.rows));
    let users = import(&node, &spec, "users", None).unwrap();
    assert_eq!(users.rows, truth["people"]["retail"].as_u64().unwrap());

    let catalog = node.catalog().unwrap();
    assert_eq!(catalog.datasets().unwrap().len(), 2);
    assert_eq!(catalog.verify_audit().unwrap(), 4, "init and three imports");
}

#[test]
fn a_bad_value_names_file_line_and_column_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("world");
    world(&w);
    init(&tmp.path().join("retail"), "retail").unwrap();
    let node = NodeDir::open(&tmp.path().join("retail")).unwrap();
    let csv = w.join("retail/orders.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Line 4 (the third data row) gets an amount that is not a whole number.
    let header: Vec<&str> = lines[0].split(',').collect();
    let amount = header.iter().position(|h| *h == "amount_fen").unwrap();
    let mut fields: Vec<String> = lines[3].split(',').map(str::to_string).collect();
    fields[amount] = "12.50".into();
    lines[3] = fields.join(",");
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();

    let err = import(&node, &w.join("collab.toml"), "orders", Some(&csv))
        .unwrap_err()
        .to_string();
    assert!(err.contains("retail/orders.csv"), "{err}");
    assert!(
        err.contains("line 4") && err.contains("\"amount_fen\"") && err.contains("12.50"),
        "{err}"
    );
    // Nothing half-written: no table file, no catalog version, only the init audited.
    let table_dir = node.dir().join("tables/retail/orders");
    let leftovers = std::fs::read_dir(&table_dir).map_or(0, |d| d.count());
    assert_eq!(leftovers, 0, "no file left in {}", table_dir.display());
    let catalog = node.catalog().unwrap();
    assert!(catalog.datasets().unwrap().is_empty());
    assert_eq!(catalog.verify_audit().unwrap(), 1);
}

#[test]
fn tables_and_parties_the_spec_lacks_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("world");
    world(&w);
    init(&tmp.path().join("news"), "news").unwrap();
    init(&tmp.path().join("retail"), "retail").unwrap();
    let spec = w.join("collab.toml");
    let news = NodeDir::open(&tmp.path().join("news")).unwrap();
    let err = import(&news, &spec, "users", None).unwrap_err().to_string();
    assert!(err.contains("party \"news\""), "{err}");
    let retail = NodeDir::open(&tmp.path().join("retail")).unwrap();
    let err = import(&retail, &spec, "carts", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no table \"carts\"") && err.contains("orders"),
        "{err}"
    );
}

//! The same seed gives byte-identical files; another seed gives other files; a world
//! only appears whole, and never over an existing one without `force`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;

use jingteng_synth::{Config, Error, Scale, generate};

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn config(seed: u64, people: &str) -> Config {
    Config {
        seed,
        scale: people.parse().unwrap(),
        force: false,
        media: 1,
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    // More than one chunk of people, so parallel generation and ordered writing are exercised.
    generate(&config(7, "20000"), &a, &|_, _| {}).unwrap();
    generate(&config(7, "20000"), &b, &|_, _| {}).unwrap();
    generate(&config(8, "20000"), &c, &|_, _| {}).unwrap();
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert_eq!(
        fa.len(),
        20,
        "9 tables × (csv, parquet), truth.json, collab.toml: {:?}",
        fa.keys()
    );
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(
            bytes == &fb[name],
            "{name} differs between two runs of seed 7"
        );
    }
    for name in ["social/users.csv", "retail/orders.parquet", "truth.json"] {
        assert!(fa[name] != fc[name], "{name} is the same for seeds 7 and 8");
    }
}

#[test]
fn a_non_empty_directory_is_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("w");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("precious.txt"), "keep me").unwrap();
    let err = generate(&config(1, "tiny"), &out, &|_, _| {}).unwrap_err();
    assert!(matches!(err, Error::Output { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("precious.txt")).unwrap(),
        "keep me"
    );

    let forced = Config {
        force: true,
        ..config(1, "tiny")
    };
    generate(&forced, &out, &|_, _| {}).unwrap();
    assert!(!out.join("precious.txt").exists());
    assert!(out.join("truth.json").exists());
    // No staging or backup directory is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("w")]);
}

#[test]
fn scales_parse_or_say_what_is_accepted() {
    assert_eq!("tiny".parse::<Scale>().unwrap().people(), 5_000);
    assert_eq!("MEDIUM".parse::<Scale>().unwrap().people(), 1_000_000);
    assert_eq!("250_000".parse::<Scale>().unwrap().people(), 250_000);
    assert_eq!("2,000".parse::<Scale>().unwrap().people(), 2_000);
    for bad in ["huge", "10", "-5", "1000000000", ""] {
        let err = bad.parse::<Scale>().unwrap_err().to_string();
        assert!(err.contains("tiny, small, medium, large"), "{bad}: {err}");
    }
}

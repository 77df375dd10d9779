//! Behaviour tests as data: `corpus/attacks.slt` (queries that must be refused, with the
//! rule) and `corpus/allowed.slt` (queries that must be answered, with the answer in
//! threshold mode). `JT_BLESS=1` rewrites the answers in `allowed.slt`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use jingteng_engine::{Error, Limits};

fn blocks(text: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(line);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn render(answer: &jingteng_engine::Answer) -> Vec<String> {
    let mut rows: Vec<String> = answer
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| match v {
                    serde_json::Value::Number(n) if n.is_f64() => {
                        format!("{:.4}", n.as_f64().unwrap_or(f64::NAN))
                    }
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus() {
    let w = common::world(11, 20_000, "threshold").await;
    let engine = w.engine(Limits::default()).await;

    let attacks = include_str!("corpus/attacks.slt");
    let mut n = 0;
    for b in blocks(attacks) {
        let rule = b[0]
            .strip_prefix("refused ")
            .expect("a block starts with `refused RULE`");
        let sql = b[1..].join("\n");
        match engine.query(&sql, "analyst").await {
            Err(Error::Refused(r)) => {
                assert_eq!(r.rule, rule, "{sql}\nrefused for the wrong rule: {r}");
                assert!(!r.message.is_empty());
            }
            Err(other) => panic!("{sql}\nfailed instead of being refused: {other}"),
            Ok(a) => panic!("{sql}\nwas answered: {:?}", a.rows),
        }
        n += 1;
    }
    assert!(n >= 30, "only {n} attacks");

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/allowed.slt");
    let text = std::fs::read_to_string(path).unwrap();
    let bless = std::env::var_os("JT_BLESS").is_some();
    let mut blessed = String::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        blessed.push_str(line);
        blessed.push('\n');
    }
    let mut failures = Vec::new();
    for b in blocks(&text) {
        assert_eq!(b[0], "query");
        let sep = b
            .iter()
            .position(|l| *l == "----")
            .expect("---- after the SQL");
        let sql = b[1..sep].join("\n");
        let expected: Vec<String> = b[sep + 1..].iter().map(|s| s.to_string()).collect();
        let answer = engine
            .query(&sql, "analyst")
            .await
            .unwrap_or_else(|e| panic!("{sql}\nwas refused: {e}"));
        let got = render(&answer);
        assert!(!got.is_empty(), "{sql}\nreturned no rows");
        if got != expected {
            failures.push(format!(
                "{sql}\nexpected:\n{}\ngot:\n{}",
                expected.join("\n"),
                got.join("\n")
            ));
        }
        blessed.push_str(&format!("\nquery\n{sql}\n----\n{}\n", got.join("\n")));
    }
    if bless {
        std::fs::write(path, blessed).unwrap();
    } else {
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}

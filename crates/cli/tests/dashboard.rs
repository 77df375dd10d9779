//! The web dashboard in a real browser: `jingteng demo` serving on loopback, then the
//! Playwright script in tests/browser/ (playwright-core driving Chromium headless)
//! opens every page of every node, checks the charts have data (insight asked of the
//! host, campaign reports, the privacy budget among them), that reopening a page spends
//! no privacy budget, the tokens, the language toggle and the operator's action, and
//! saves screenshots.
//!
//! Needs `node`, the npm modules of tests/browser and Chromium. Without them this test
//! FAILS, saying how to install them (it never passes without having run the browser):
//!
//! ```sh
//! apt-get update && apt-get install -y chromium nodejs npm fonts-wqy-microhei
//! npm ci --prefix tests/browser
//! ```
//!
//! `JT_CHROMIUM` names another Chromium binary; `JT_NODE` another `node`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const INSTALL: &str = "install them with\n    apt-get update && apt-get install -y chromium nodejs npm fonts-wqy-microhei\n    npm ci --prefix tests/browser\n(from the repository's root; .ci/run does this; see docs/dashboard.md)";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `node`, and Chromium: both present, and the npm modules installed; else the test
/// fails naming what is missing.
fn prerequisites(root: &Path) -> (String, String) {
    let node = std::env::var("JT_NODE").unwrap_or_else(|_| "node".into());
    let chromium = std::env::var("JT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut missing = Vec::new();
    match Command::new(&node).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => missing.push(format!("`{node}` (Node.js) does not run")),
    }
    let module = root.join("tests/browser/node_modules/playwright-core/package.json");
    if !module.exists() {
        missing.push(format!(
            "the npm modules of tests/browser ({} is missing)",
            module.display()
        ));
    }
    if !Path::new(&chromium).exists() {
        missing.push(format!("Chromium ({chromium} is missing)"));
    }
    assert!(
        missing.is_empty(),
        "the dashboard's browser test cannot run: {}.\nPlease {INSTALL}",
        missing.join("; ")
    );
    (node, chromium)
}

/// The demo, stopped (SIGTERM, then killed) however the test ends.
struct Demo(Child);

impl Demo {
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.terminate();
        }
    }
}

#[test]
fn every_dashboard_page_renders_its_charts_in_chromium() {
    let root = repo_root();
    let (node, chromium) = prerequisites(&root);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let stderr_path = tmp.path().join("demo.stderr");
    let mut demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_jingteng"))
            .args(["demo", "--scale", "tiny", "--seed", "5", "--out"])
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("the jingteng binary runs"),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // The demo prints each node's dashboard URL once it serves.
    let mut urls: Vec<(String, String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let words: Vec<&str> = line.split_whitespace().collect();
                if let [party, url, ..] = words[..]
                    && let Some((base, token)) = url.split_once("?token=")
                    && base.starts_with("http://127.0.0.1:")
                {
                    urls.push((party.into(), base.into(), token.into()));
                }
                if line.starts_with("Read-only (analyst) access") {
                    break;
                }
            }
            Err(_) => {
                let status = demo.0.try_wait().unwrap();
                panic!(
                    "the demo did not print its dashboards (exit status {status:?}); its standard error:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        }
    }
    let parties: Vec<&str> = urls.iter().map(|u| u.0.as_str()).collect();
    assert_eq!(parties, ["social", "retail", "brand", "news"]);

    // report.json names each dashboard's address (never a token).
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let mut nodes = serde_json::Map::new();
    for (party, base, operator) in &urls {
        assert_eq!(
            report["nodes"][party]["dashboard"],
            base.as_str(),
            "{party}"
        );
        let dir = out.join("nodes").join(party);
        let analyst = std::fs::read_to_string(dir.join("secrets/dashboard-analyst.token")).unwrap();
        let kept = std::fs::read_to_string(dir.join("secrets/dashboard-operator.token")).unwrap();
        assert_eq!(
            kept.trim(),
            operator,
            "{party}: the printed token is the node's"
        );
        nodes.insert(
            party.clone(),
            serde_json::json!({ "url": base, "operator": operator, "analyst": analyst.trim() }),
        );
    }
    assert!(
        !std::fs::read_to_string(out.join("report.json"))
            .unwrap()
            .contains("op_"),
        "report.json holds no token"
    );

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let config = serde_json::json!({ "host": "retail", "nodes": nodes });
    let run = Command::new(&node)
        .arg(root.join("tests/browser/dashboard.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("JT_DASHBOARDS", config.to_string())
        .env("JT_SCREENSHOTS", &shots)
        .env("JT_CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!("{printed}");
    assert!(
        run.status.success(),
        "the browser checks failed:\n{printed}\n(if Chromium or the npm modules are broken, {INSTALL})"
    );
    let taken = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("png".as_ref()))
        .count();
    // Eight pages, in English and Chinese, at each of three nodes, and a few more.
    assert!(taken >= 48, "{taken} screenshots in {}", shots.display());
    eprintln!("dashboard screenshots: {}", shots.display());

    // The nodes and their dashboards stop cleanly on SIGTERM.
    let status = demo.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "the demo did not stop cleanly on SIGTERM ({status:?}):\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
}

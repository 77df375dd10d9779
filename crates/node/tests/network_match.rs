//! Three nodes on loopback match the synthetic world over the network — mutual TLS,
//! signed contract, each party re-blinding the others' batches through its API — and
//! find exactly what local mode finds and truth.json says is linkable.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use jingteng_node::contract::{self};
use jingteng_node::{
    NodeDir, RetryPolicy, RunStatus, ServeOptions, get_from_peer, import, init, post_to_peer,
    serve, serve_with,
};
use tokio::net::TcpListener;

/// Imports every table the spec gives this node's party (the identity table first).
fn import_all(n: &NodeDir, spec: &Path) {
    let collab = jingteng_match::read_spec(spec).unwrap();
    let party = collab
        .parties()
        .iter()
        .find(|p| p.name == n.config().party)
        .unwrap();
    for t in party.all_tables() {
        import(n, spec, &t.name, None).unwrap();
    }
}

/// `SELECT …` over a joined view in `dir`, with plain DataFusion: the rows, as text.
async fn plain(dir: &Path, sql: &str) -> Vec<String> {
    use jingteng_engine::datafusion::prelude::SessionContext;
    let info = jingteng_engine::view::load(dir).unwrap();
    let ctx = SessionContext::new();
    jingteng_engine::register_view(&ctx, dir, &info)
        .await
        .unwrap();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let (_, rows) = jingteng_engine::rows_of(&batches).unwrap();
    rows.iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect()
}

/// The first place where two JSON values differ: its path and both values (numbers
/// equal to 12 significant digits are equal).
fn difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.keys().chain(y.keys()).find_map(|k| {
            difference(
                &x[k],
                y.get(k).unwrap_or(&Value::Null),
                &format!("{path}.{k}"),
            )
        }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (x, y))| difference(x, y, &format!("{path}[{i}]"))),
        // JSON numbers read back may be one unit in the last place off.
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            ((x - y).abs() > 1e-12 * x.abs().max(y.abs())).then(|| format!("{path}: {x} vs {y}"))
        }
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

/// The columns and types of `SELECT …` over a joined view in `dir`.
async fn plain_types(dir: &Path, sql: &str) -> Vec<String> {
    use jingteng_engine::datafusion::prelude::SessionContext;
    let info = jingteng_engine::view::load(dir).unwrap();
    let ctx = SessionContext::new();
    jingteng_engine::register_view(&ctx, dir, &info)
        .await
        .unwrap();
    let df = ctx.sql(sql).await.unwrap();
    df.schema()
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect()
}

async fn node(root: &Path, party: &str) -> (NodeDir, TcpListener) {
    let dir = root.join(party);
    init(&dir, party).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = dir.join("node.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("127.0.0.1:7443", &addr);
    std::fs::write(&cfg, text).unwrap();
    (NodeDir::open(&dir).unwrap(), listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_match_like_local_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let world = tmp.path().join("world");
    let config = jingteng_synth::Config {
        seed: 6,
        scale: "tiny".parse().unwrap(),
        force: false,
        media: 1,
    };
    jingteng_synth::generate(&config, &world, &|_, _| {}).unwrap();
    let spec = world.join("collab.toml");
    // Threshold release, so that the host's answers can be compared with local mode's.
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("mode = \"dp\"", "mode = \"threshold\"")).unwrap();

    let (social, l_social) = node(tmp.path(), "social").await;
    let (retail, l_retail) = node(tmp.path(), "retail").await;
    let (brand, l_brand) = node(tmp.path(), "brand").await;

    // Retail proposes and will host; everyone signs; everyone records the final contract.
    let cards = vec![
        contract::card(&social).unwrap(),
        contract::card(&brand).unwrap(),
    ];
    let mut c = contract::propose(&retail, &spec, cards).unwrap();
    contract::sign(&social, &mut c).unwrap();
    let status = contract::sign(&brand, &mut c).unwrap();
    assert!(status.active);
    for n in [&social, &retail, &brand] {
        contract::record(n, &c, &status, "activate").unwrap();
    }
    // Each party imports its own tables.
    for n in [&social, &retail, &brand] {
        import_all(n, &spec);
    }

    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for (party, listener) in [
        ("social", l_social),
        ("retail", l_retail),
        ("brand", l_brand),
    ] {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dir = tmp.path().join(party);
        stops.push(stop);
        servers.push(tokio::spawn(async move {
            let n = NodeDir::open(&dir).unwrap();
            serve(&n, listener, async {
                let _ = stopped.await;
            })
            .await
        }));
    }

    let host = contract::card(&retail).unwrap();
    let (status, body) = post_to_peer(
        &retail,
        &host.endpoint,
        &host.cert_sha256,
        "/v1/collaborations/synth-6/match",
        "application/json",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let run = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();

    // Only the host's operator starts a match at the host.
    let (status, _) = post_to_peer(
        &social,
        &host.endpoint,
        &host.cert_sha256,
        "/v1/collaborations/synth-6/match",
        "application/json",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 403);

    // A member that is not the spec's host cannot have others send it their join keys.
    let b = contract::card(&brand).unwrap();
    let (status, body) = post_to_peer(
        &social,
        &b.endpoint,
        &b.cert_sha256,
        "/v1/collaborations/synth-6/match/x/contribute",
        "application/json",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("urn:jingteng:error:not-the-host"));

    // Any member (here social) follows the run and receives the report.
    let path = format!("/v1/collaborations/synth-6/match/{run}");
    let mut done = None;
    for _ in 0..600 {
        let (status, body) = get_from_peer(&social, &host.endpoint, &host.cert_sha256, &path)
            .await
            .unwrap();
        assert_eq!(status, 200);
        let s: RunStatus = serde_json::from_slice(&body).unwrap();
        assert!(s.error.is_none(), "{:?}", s.error);
        if s.state == "done" {
            done = s.report;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = done.expect("the match finished");

    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world.join("truth.json")).unwrap()).unwrap();
    let local =
        serde_json::to_value(jingteng_match::run(&spec, &|_: &str, _: u64| {}).unwrap()).unwrap();
    for (key, t) in truth["overlap"].as_object().unwrap() {
        assert_eq!(
            report["overlap"][key]["matched"], t["linkable"],
            "overlap.{key}"
        );
        assert_eq!(
            report["overlap"][key], local["overlap"][key],
            "overlap.{key} vs local mode"
        );
    }
    assert_eq!(report["identifiers"], local["identifiers"]);

    // The host holds the joined view: every member's declared columns under person ids,
    // the same as local mode builds (the same people, linked alike), and no member's
    // shared rows are left in the run's folder.
    let view = jingteng_node::view_dir(retail.dir(), "synth-6");
    let local_state = tmp.path().join("local");
    jingteng_engine::view::build_local(
        &spec,
        &local_state,
        std::sync::Arc::new(|_: &str, _: u64| {}),
    )
    .await
    .unwrap();
    let info = jingteng_engine::view::load(&view).unwrap();
    assert_eq!(info.tables.len(), 7);
    for t in &info.tables {
        // The same columns of the same types (a timestamp's unit included).
        let types = format!("SELECT * FROM {} LIMIT 1", t.name);
        assert_eq!(
            plain_types(&view, &types).await,
            plain_types(&local_state, &types).await,
            "{}",
            t.name
        );
        let sql = if t.name == "social.campaigns" {
            format!("SELECT COUNT(*), SUM(spend_fen) FROM {}", t.name)
        } else {
            format!("SELECT COUNT(*), COUNT(DISTINCT person) FROM {}", t.name)
        };
        assert_eq!(
            plain(&view, &sql).await,
            plain(&local_state, &sql).await,
            "{sql}"
        );
    }
    let across = "SELECT u.age_band, o.category, COUNT(*) AS n FROM social.exposures e \
        JOIN social.users u ON u.person = e.person JOIN retail.orders o ON o.person = e.person \
        GROUP BY 1, 2 ORDER BY 1, 2";
    let networked = plain(&view, across).await;
    assert!(!networked.is_empty());
    assert_eq!(networked, plain(&local_state, across).await);
    // Measurement reads the networked view (timestamps in milliseconds and campaign days
    // as text, as the members' imports make them) as it reads the local one (seconds,
    // dates): the same attributed orders and holdout outcomes. Regression: at a
    // networked host, lift found no conversions and attribution windows shrank 1000×.
    let collab = jingteng_match::read_spec(&spec).unwrap();
    let mut derived = Vec::new();
    for dir in [&view, &local_state] {
        let mut engine = jingteng_engine::Engine::open(
            &collab,
            dir,
            &jingteng_engine::view::load(dir).unwrap(),
            jingteng_catalog::Catalog::in_memory().unwrap(),
            jingteng_engine::Limits::default(),
        )
        .await
        .unwrap();
        let sources = jingteng_measure::Sources::default();
        jingteng_measure::register_attributed(&mut engine, &Default::default(), &sources)
            .await
            .unwrap();
        jingteng_measure::register_lift_outcomes(&mut engine, &Default::default(), &sources)
            .await
            .unwrap();
        let mut rows = Vec::new();
        for sql in [
            format!(
                "SELECT campaign_id, COUNT(*), SUM(credit_fen) FROM {} GROUP BY 1 ORDER BY 1",
                jingteng_measure::ATTRIBUTED
            ),
            format!(
                "SELECT campaign_id, grp, COUNT(*), SUM(converted), SUM(value_fen) FROM {} GROUP BY 1, 2 ORDER BY 1, 2",
                jingteng_measure::LIFT_OUTCOMES
            ),
        ] {
            let batches = engine
                .session()
                .sql(&sql)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            rows.push(jingteng_engine::rows_of(&batches).unwrap().1);
        }
        derived.push(rows);
    }
    assert!(!derived[1][0].is_empty(), "orders were attributed");
    assert!(
        derived[1][1].iter().any(|r| r[3].as_i64() > Some(0)),
        "people of the holdout converted"
    );
    assert_eq!(derived[0], derived[1]);
    let run_dir = retail.dir().join("runs").join(&run);
    let left: Vec<_> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(left, ["report.json"], "{left:?}");

    // A member's analyst queries the host: answered under the rules, like local mode.
    let sql = "SELECT age_band, COUNT(DISTINCT person) AS people FROM social.users GROUP BY age_band ORDER BY age_band";
    let req = jingteng_node::QueryRequest {
        sql: sql.into(),
        analyst: "alice".into(),
        explain: false,
    };
    let jingteng_node::QueryReply::Answer(answer) =
        jingteng_node::query_host(&brand, "synth-6", &req)
            .await
            .unwrap()
    else {
        panic!("an answer")
    };
    let collab = jingteng_match::read_spec(&spec).unwrap();
    let engine = jingteng_engine::Engine::open(
        &collab,
        &local_state,
        &jingteng_engine::view::load(&local_state).unwrap(),
        jingteng_catalog::Catalog::open(&local_state.join("catalog.sqlite")).unwrap(),
        jingteng_engine::Limits::default(),
    )
    .await
    .unwrap();
    let here = engine.query(sql, "alice").await.unwrap();
    assert!(!answer.rows.is_empty());
    assert_eq!(answer.rows, here.rows);
    // …and refused with the rule when it would release row-level data.
    let req = jingteng_node::QueryRequest {
        sql: "SELECT person FROM social.users".into(),
        analyst: "alice".into(),
        explain: false,
    };
    match jingteng_node::query_host(&brand, "synth-6", &req).await {
        Err(jingteng_node::Error::Remote { code, detail, .. }) => {
            assert_eq!(code, "refused", "{detail}");
            assert!(
                detail.contains("identifier") || detail.contains("row-level"),
                "{detail}"
            );
        }
        other => panic!("not refused: {other:?}"),
    }
    // A member's measurements at the host equal local mode's, figure for figure.
    let mut engine = engine;
    let local_info = jingteng_engine::view::load(&local_state).unwrap();
    let measures = [
        jingteng_measure::Measure::Attribution {
            settings: Default::default(),
            campaign: None,
            by: vec![jingteng_measure::Dimension::Placement],
        },
        jingteng_measure::Measure::Lift {
            settings: Default::default(),
            campaign: None,
        },
        jingteng_measure::Measure::Reach { campaign: None },
    ];
    for m in measures {
        let req = jingteng_node::MeasureRequest {
            measure: m.clone(),
            analyst: "alice".into(),
        };
        let there = jingteng_node::measure_host(&brand, "synth-6", &req)
            .await
            .unwrap();
        let here = m.run(&mut engine, &local_info, "alice").await.unwrap();
        let (there, here) = (
            serde_json::to_value(there).unwrap(),
            serde_json::to_value(here).unwrap(),
        );
        assert!(there["campaigns"].as_array().is_some_and(|c| !c.is_empty()));
        assert_eq!(
            difference(&there, &here, ""),
            None,
            "{} at the host vs local mode",
            there["kind"]
        );
    }
    // A setting out of range is refused by the host with what is wrong.
    let req = jingteng_node::MeasureRequest {
        measure: jingteng_measure::Measure::Lift {
            settings: jingteng_measure::LiftSettings {
                bootstrap_draws: u32::MAX,
                ..Default::default()
            },
            campaign: None,
        },
        analyst: "alice".into(),
    };
    match jingteng_node::measure_host(&brand, "synth-6", &req).await {
        Err(jingteng_node::Error::Remote { code, detail, .. }) => {
            assert_eq!(code, "bad-settings", "{detail}");
            assert!(detail.contains("bootstrap draws"), "{detail}");
        }
        other => panic!("not refused: {other:?}"),
    }

    // The host audited the query under the member's analyst.
    assert!(
        retail
            .catalog()
            .unwrap()
            .audit_entries()
            .unwrap()
            .iter()
            .any(|e| e.action == "query" && e.actor.contains("brand:alice"))
    );

    // The host audited the match and kept it as a finished job.
    let catalog = retail.catalog().unwrap();
    assert!(
        catalog
            .audit_entries()
            .unwrap()
            .iter()
            .any(|e| e.action == "match")
    );
    let jobs = catalog.jobs().unwrap();
    assert_eq!(
        (jobs.len(), jobs[0].kind.as_str(), jobs[0].state.as_str()),
        (1, "match", "done")
    );

    for s in stops {
        s.send(()).unwrap();
    }
    for s in servers {
        s.await.unwrap().unwrap();
    }
}

/// Three signed, importing nodes over a tiny synthetic world, not yet serving.
struct Setup {
    tmp: tempfile::TempDir,
    spec: std::path::PathBuf,
    listeners: Vec<(&'static str, TcpListener)>,
}

async fn setup(seed: u64) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let world = tmp.path().join("world");
    let config = jingteng_synth::Config {
        seed,
        scale: "tiny".parse().unwrap(),
        force: false,
        media: 1,
    };
    jingteng_synth::generate(&config, &world, &|_, _| {}).unwrap();
    let spec = world.join("collab.toml");
    let (social, l_social) = node(tmp.path(), "social").await;
    let (retail, l_retail) = node(tmp.path(), "retail").await;
    let (brand, l_brand) = node(tmp.path(), "brand").await;
    let cards = vec![
        contract::card(&social).unwrap(),
        contract::card(&brand).unwrap(),
    ];
    let mut c = contract::propose(&retail, &spec, cards).unwrap();
    contract::sign(&social, &mut c).unwrap();
    let status = contract::sign(&brand, &mut c).unwrap();
    for n in [&social, &retail, &brand] {
        contract::record(n, &c, &status, "activate").unwrap();
    }
    for n in [&social, &retail, &brand] {
        import_all(n, &spec);
    }
    Setup {
        tmp,
        spec,
        listeners: vec![
            ("social", l_social),
            ("retail", l_retail),
            ("brand", l_brand),
        ],
    }
}

type Server = tokio::task::JoinHandle<jingteng_node::Result<()>>;

/// Serves `party` from `root` with `options` until `stop` fires (or the node halts).
fn start(
    root: &Path,
    party: &str,
    listener: TcpListener,
    options: ServeOptions,
) -> (tokio::sync::oneshot::Sender<()>, Server) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dir = root.join(party);
    let server = tokio::spawn(async move {
        let n = NodeDir::open(&dir).unwrap();
        serve_with(
            &n,
            listener,
            async {
                let _ = stopped.await;
            },
            options,
        )
        .await
    });
    (stop, server)
}

fn quick(attempts: u32, max_ms: u64) -> ServeOptions {
    let mut o = ServeOptions::default();
    o.retry = RetryPolicy {
        attempts,
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(max_ms),
    };
    o.watch_interval = Duration::from_millis(300);
    o
}

async fn start_match(retail: &NodeDir) -> String {
    let host = contract::card(retail).unwrap();
    let (status, body) = post_to_peer(
        retail,
        &host.endpoint,
        &host.cert_sha256,
        "/v1/collaborations/synth-6/match",
        "application/json",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<serde_json::Value>(&body).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Follows a run at the host (as `who`) until it is done or failed.
async fn follow(who: &NodeDir, retail: &NodeDir, run: &str) -> RunStatus {
    let host = contract::card(retail).unwrap();
    let path = format!("/v1/collaborations/synth-6/match/{run}");
    for _ in 0..600 {
        let (status, body) = get_from_peer(who, &host.endpoint, &host.cert_sha256, &path)
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let s: RunStatus = serde_json::from_slice(&body).unwrap();
        if s.state == "done" || s.state == "failed" {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run} did not finish within a minute");
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The host is killed right after it kept the first contribution of a run; restarted
/// from the same directory, it asks the others again and finds exactly what local mode
/// finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_killed_after_the_first_contribution_resumes_and_finds_the_same() {
    killed_host_resumes(1).await;
}

/// Killed after keeping the last contribution, before linking: restarted, it links what
/// it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_killed_before_linking_resumes_and_finds_the_same() {
    killed_host_resumes(3).await;
}

async fn killed_host_resumes(kept_when_killed: usize) {
    let Setup {
        tmp,
        spec,
        listeners,
    } = setup(6).await;
    let root = tmp.path();
    let mut servers = Vec::new();
    let mut host_addr = String::new();
    let mut host_run = None;
    for (party, listener) in listeners {
        if party == "retail" {
            host_addr = listener.local_addr().unwrap().to_string();
            let mut o = quick(200, 100);
            o.halt_after_contributions = Some(kept_when_killed);
            host_run = Some(start(root, party, listener, o));
        } else {
            servers.push(start(root, party, listener, quick(200, 100)));
        }
    }
    let retail = NodeDir::open(&root.join("retail")).unwrap();
    let social = NodeDir::open(&root.join("social")).unwrap();
    let run = start_match(&retail).await;

    // The host halts, as if killed, right after keeping that many contributions.
    let (_stop, halted) = host_run.unwrap();
    tokio::time::timeout(Duration::from_secs(60), halted)
        .await
        .expect("the host halted")
        .unwrap()
        .unwrap();
    let run_dir = root.join("retail/runs").join(&run);
    // Whole contributions only, and the shared tables' parts (folders `party-N/`).
    let kept: Vec<String> = files_in(&run_dir)
        .into_iter()
        .filter(|f| !run_dir.join(f).is_dir())
        .collect();
    assert_eq!(kept.len(), kept_when_killed, "contributions kept: {kept:?}");
    assert!(
        kept.iter()
            .all(|f| f.starts_with("party-") && f.ends_with(".contrib")),
        "only whole contributions: {kept:?}"
    );
    assert!(!jingteng_node::view_dir(retail.dir(), "synth-6").exists());
    let jobs = retail.catalog().unwrap().jobs().unwrap();
    assert_eq!((jobs.len(), jobs[0].attempts), (1, 1));
    assert!(matches!(jobs[0].state.as_str(), "running" | "retrying"));
    // Its PSI key for the collaboration is on disk, for its owner only.
    let keys = root.join("retail/secrets/psi");
    let key_files = files_in(&keys);
    assert_eq!(key_files.len(), 1, "{key_files:?}");
    let key_path = keys.join(&key_files[0]);
    let key = std::fs::read(&key_path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Nothing answers at the host now.
    let host = contract::card(&retail).unwrap();
    assert!(
        get_from_peer(&social, &host.endpoint, &host.cert_sha256, "/v1/health")
            .await
            .is_err()
    );

    // With every contribution kept the host needs no one: the members go away.
    if kept_when_killed == 3 {
        for (stop, server) in servers.drain(..) {
            stop.send(()).unwrap();
            server.await.unwrap().unwrap();
        }
    }
    // Restarted from the same directory on the same address, it resumes the run.
    let listener = TcpListener::bind(&host_addr).await.unwrap();
    servers.push(start(root, "retail", listener, quick(200, 100)));
    let s = follow(&social, &retail, &run).await;
    assert_eq!(s.state, "done", "{:?}", s.error);
    assert_eq!(s.attempts, 2);
    let report = s.report.unwrap();
    let local =
        serde_json::to_value(jingteng_match::run(&spec, &|_: &str, _: u64| {}).unwrap()).unwrap();
    assert_eq!(report["overlap"], local["overlap"]);
    assert_eq!(report["identifiers"], local["identifiers"]);
    assert_eq!(report["records"], local["records"]);

    // The same key; the job done on its second attempt; the join keys gone, the report
    // kept; one audit entry for the match.
    assert_eq!(std::fs::read(&key_path).unwrap(), key);
    let catalog = retail.catalog().unwrap();
    let jobs = catalog.jobs().unwrap();
    assert_eq!(
        (jobs.len(), jobs[0].state.as_str(), jobs[0].attempts),
        (1, "done", 2)
    );
    assert_eq!(files_in(&run_dir), ["report.json"]);
    // The joined view was built from what the members shared, before and after the halt.
    let info =
        jingteng_engine::view::load(&jingteng_node::view_dir(retail.dir(), "synth-6")).unwrap();
    assert_eq!(info.fingerprint, run);
    assert_eq!(
        info.tables
            .iter()
            .find(|t| t.name == "social.users")
            .unwrap()
            .rows,
        report["records"]["social"].as_u64().unwrap()
    );
    let matches = catalog
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "match")
        .count();
    assert_eq!(matches, 1);

    for (stop, server) in servers {
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    // A host restarted after the run still answers its status, from what it kept.
    let listener = TcpListener::bind(&host_addr).await.unwrap();
    let (stop, server) = start(root, "retail", listener, quick(3, 50));
    let s = follow(&retail, &retail, &run).await;
    assert_eq!(
        (s.state.as_str(), s.report.unwrap()["overlap"].clone()),
        ("done", local["overlap"].clone())
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A member that is not running: the host retries it, then fails the run naming it
/// and the attempts, in bounded time, instead of waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_member_fails_the_run_clearly_after_retries() {
    let Setup { tmp, listeners, .. } = setup(6).await;
    let root = tmp.path();
    let mut servers = Vec::new();
    for (party, listener) in listeners {
        if party == "brand" {
            drop(listener); // brand is down: connections are refused
        } else {
            servers.push(start(root, party, listener, quick(3, 50)));
        }
    }
    let retail = NodeDir::open(&root.join("retail")).unwrap();
    let started = std::time::Instant::now();
    let run = start_match(&retail).await;
    let s = follow(&retail, &retail, &run).await;
    assert_eq!(s.state, "failed");
    let error = s.error.unwrap();
    assert!(
        error.contains("peer brand (") && error.contains("gave up after 3 attempts"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let jobs = retail.catalog().unwrap().jobs().unwrap();
    assert_eq!(jobs[0].state, "failed");
    assert_eq!(jobs[0].error.as_deref(), Some(error.as_str()));
    // While it retried, the job said whom and which attempt.
    let progress: serde_json::Value = serde_json::from_str(&jobs[0].progress).unwrap();
    let note = progress["retrying"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("brand (") && note.contains("attempt "),
        "{note}"
    );
    // Nothing kept for a run that failed before anyone delivered? The host kept only
    // whole contributions, if any, and no temporary files.
    for name in files_in(&root.join("retail/runs").join(&run)) {
        assert!(name.ends_with(".contrib"), "{name}");
    }
    for (stop, server) in servers {
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}

/// Record id → person id of a party's records, as local mode's view keeps them.
fn records_of(state: &Path, party: &str) -> std::collections::BTreeMap<String, u64> {
    use arrow::array::{Array, StringArray, UInt64Array};
    let path = jingteng_engine::view::records_path(state, party);
    let file = std::fs::File::open(&path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for b in reader {
        let b = b.unwrap();
        let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let persons = b.column(1).as_any().downcast_ref::<UInt64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.insert(ids.value(i).to_string(), persons.value(i));
        }
    }
    out
}

/// A person forgotten at every party that holds them (`jingteng forget --collab ID
/// --dir NODE` at each node), and a social-only person forgotten at social, are out of
/// the next networked match: no node blinds or shares their records, so the host's
/// report counts them nowhere and its joined view holds exactly what local mode's view
/// holds with the same requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn people_forgotten_at_their_nodes_are_out_of_the_next_match_and_view() {
    let Setup {
        tmp,
        spec,
        listeners,
    } = setup(6).await;
    let root = tmp.path();
    // Who is who, from local mode's view without requests.
    let plain_state = root.join("plain");
    jingteng_engine::view::build_local(
        &spec,
        &plain_state,
        std::sync::Arc::new(|_: &str, _: u64| {}),
    )
    .await
    .unwrap();
    let parties = ["social", "retail", "brand"];
    let records: Vec<_> = parties
        .iter()
        .map(|p| records_of(&plain_state, p))
        .collect();
    let id_of = |pi: usize, person: u64| {
        records[pi]
            .iter()
            .find(|(_, p)| **p == person)
            .map(|(id, _)| id.clone())
    };
    // The first person with a record at every party, and a social record linked to no one.
    let everywhere = records[0]
        .values()
        .copied()
        .filter(|p| (1..3).all(|pi| id_of(pi, *p).is_some()))
        .min()
        .expect("someone at every party");
    let (alone_id, _) = records[0]
        .iter()
        .find(|(_, p)| **p >= 1 << 32)
        .expect("a social record linked to no one");
    let mut forgotten: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for (pi, party) in parties.iter().enumerate() {
        let id = id_of(pi, everywhere).unwrap();
        forgotten
            .entry(party.to_string())
            .or_default()
            .insert(id.clone());
        let n = NodeDir::open(&root.join(party)).unwrap();
        let mut catalog = n.catalog().unwrap();
        assert!(
            catalog
                .record_forget("synth-6", party, &id, "delete")
                .unwrap()
        );
        if *party == "social" {
            assert!(
                catalog
                    .record_forget("synth-6", party, alone_id, "opt-out")
                    .unwrap()
            );
            forgotten
                .get_mut("social")
                .unwrap()
                .insert(alone_id.clone());
        }
    }

    let mut servers = Vec::new();
    for (party, listener) in listeners {
        servers.push(start(root, party, listener, quick(200, 100)));
    }
    let retail = NodeDir::open(&root.join("retail")).unwrap();
    let run = start_match(&retail).await;
    let s = follow(&retail, &retail, &run).await;
    assert_eq!(s.state, "done", "{:?}", s.error);
    let report = s.report.unwrap();

    // The report counts them nowhere: one record fewer at retail and brand, two at
    // social, and one person fewer at every party together.
    let plain_report = jingteng_engine::view::load(&plain_state).unwrap().report;
    let plain_report = serde_json::to_value(plain_report).unwrap();
    for (party, fewer) in [("social", 2), ("retail", 1), ("brand", 1)] {
        assert_eq!(
            report["records"][party].as_u64().unwrap() + fewer,
            plain_report["records"][party].as_u64().unwrap(),
            "records of {party}"
        );
    }
    let all = "social+retail+brand";
    assert_eq!(
        report["overlap"][all]["matched"].as_u64().unwrap() + 1,
        plain_report["overlap"][all]["matched"].as_u64().unwrap()
    );

    // The host's view: exactly local mode's with the same requests, and it says what
    // each party left out.
    let local_state = root.join("local");
    let exclusions = jingteng_engine::view::Exclusions { forgotten, now: 0 };
    jingteng_engine::view::build_local_with(
        &spec,
        &local_state,
        std::sync::Arc::new(|_: &str, _: u64| {}),
        &exclusions,
    )
    .await
    .unwrap();
    let view = jingteng_node::view_dir(retail.dir(), "synth-6");
    let info = jingteng_engine::view::load(&view).unwrap();
    assert_eq!(info.excluded_people, 4);
    for t in &info.tables {
        let sql = if t.name == "social.campaigns" {
            format!("SELECT COUNT(*), SUM(spend_fen) FROM {}", t.name)
        } else {
            format!("SELECT COUNT(*), COUNT(DISTINCT person) FROM {}", t.name)
        };
        assert_eq!(
            plain(&view, &sql).await,
            plain(&local_state, &sql).await,
            "{sql}"
        );
        let left_out = match t.name.as_str() {
            "social.users" => 2,
            "retail.users" | "brand.crm" => 1,
            _ => t.excluded_rows,
        };
        assert_eq!(t.excluded_rows, left_out, "{}", t.name);
    }
    let orders = info
        .tables
        .iter()
        .find(|t| t.name == "retail.orders")
        .unwrap();
    let local_info = jingteng_engine::view::load(&local_state).unwrap();
    let local_orders = local_info
        .tables
        .iter()
        .find(|t| t.name == "retail.orders")
        .unwrap();
    assert_eq!(
        (orders.rows, orders.excluded_rows, orders.orphan_rows),
        (
            local_orders.rows,
            local_orders.excluded_rows,
            local_orders.orphan_rows
        )
    );
    // Nothing of the members' work is left behind.
    for party in parties {
        assert!(!root.join(party).join("contrib").join(&run).exists());
    }

    for (stop, server) in servers {
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}

//! The `jingteng` binary as a user runs it: exit codes, messages, JSON output.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Output};

fn jingteng(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jingteng"))
        .args(args)
        .output()
        .expect("the jingteng binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn synth_then_match_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let world = tmp.path().join("world");
    let w = world.to_str().unwrap();
    let o = jingteng(&["synth", "--out", w, "--scale", "tiny", "--seed", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Wrote a world of 5000 people"), "{out}");

    let spec = world.join("collab.toml");
    let o = jingteng(&["match", "--spec", spec.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world.join("truth.json")).unwrap()).unwrap();
    assert_eq!(
        report["overlap"]["social+retail"]["matched"],
        truth["overlap"]["social+retail"]["linkable"]
    );

    // The same world again without --force is refused, and the world is kept.
    let o = jingteng(&["synth", "--out", w, "--scale", "tiny"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert!(world.join("truth.json").exists());
}

#[test]
fn mistakes_exit_non_zero_with_a_message() {
    let o = jingteng(&["synth", "--out", "/tmp/never", "--scale", "huge"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown scale \"huge\""),
        "{}",
        stderr(&o)
    );

    let o = jingteng(&["match", "--spec", "/nonexistent/collab.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/collab.toml"),
        "{}",
        stderr(&o)
    );

    let o = jingteng(&["match"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn audit_verify_names_an_edited_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("retail");
    let d = dir.to_str().unwrap();
    let o = jingteng(&["init", "--party", "retail", "--dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = jingteng(&["audit", "verify", "--dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 entries"));

    // Someone with the file and a SQLite shell edits the entry.
    let conn = rusqlite::Connection::open(dir.join("catalog.sqlite")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'mallory' WHERE seq = 1;",
    )
    .unwrap();
    drop(conn);
    let o = jingteng(&["audit", "verify", "--dir", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("broken at entry 1"), "{}", stderr(&o));
}

/// Runs `jingteng` with `args` and checks that it succeeded.
fn ok(args: &[&str]) -> Output {
    let o = jingteng(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

/// Three nodes (social, retail as host, brand) in `root`, each on a free loopback port,
/// signed into the collaboration of a synthetic world of `scale` and `seed`, each with
/// its tables imported; not serving yet. Returns the spec's path.
fn three_nodes(root: &std::path::Path, scale: &str, seed: &str) -> String {
    let p = |rel: &str| root.join(rel).to_str().unwrap().to_string();
    ok(&[
        "synth",
        "--out",
        &p("world"),
        "--scale",
        scale,
        "--seed",
        seed,
    ]);
    let spec = p("world/collab.toml");
    for party in ["social", "retail", "brand"] {
        ok(&["init", "--party", party, "--dir", &p(party)]);
        // A free loopback port for this node.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = root.join(party).join("node.toml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("127.0.0.1:7443", &format!("127.0.0.1:{port}"));
        std::fs::write(&cfg, text).unwrap();
    }
    for party in ["social", "brand"] {
        let card = ok(&["collab", "card", "--dir", &p(party)]).stdout;
        std::fs::write(root.join(format!("{party}.card")), card).unwrap();
    }
    ok(&[
        "collab",
        "propose",
        "--dir",
        &p("retail"),
        "--spec",
        &spec,
        "--card",
        &p("social.card"),
        "--card",
        &p("brand.card"),
        "--out",
        &p("contract.json"),
    ]);
    for party in ["social", "brand"] {
        ok(&[
            "collab",
            "sign",
            "--dir",
            &p(party),
            "--contract",
            &p("contract.json"),
        ]);
    }
    for party in ["social", "retail", "brand"] {
        ok(&[
            "collab",
            "status",
            "--dir",
            &p(party),
            "--contract",
            &p("contract.json"),
        ]);
    }
    let tables = [
        ("social", "users"),
        ("social", "campaigns"),
        ("social", "exposures"),
        ("social", "holdout"),
        ("retail", "users"),
        ("retail", "orders"),
        ("brand", "crm"),
    ];
    for (party, table) in tables {
        ok(&[
            "import",
            "--dir",
            &p(party),
            "--spec",
            &spec,
            "--table",
            table,
        ]);
    }
    spec
}

/// `jingteng serve` processes, stopped (SIGTERM) when dropped.
struct Servers(Vec<std::process::Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

fn serve(root: &std::path::Path, party: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_jingteng"))
        .args(["serve", "--dir", root.join(party).to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// `jingteng serve` of `party` that also serves RTA on `rta` (`--rta-listen`).
fn serve_rta(root: &std::path::Path, party: &str, rta: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_jingteng"))
        .args([
            "serve",
            "--dir",
            root.join(party).to_str().unwrap(),
            "--rta-listen",
            rta,
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// One RTA request over HTTP/1.1: the JSON answer.
fn rta_get(addr: &str, campaign: &str, token: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /v1/rta?campaign={campaign}&device_md5={token} HTTP/1.1\r\nHost: rta\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// The media party's users with a device id: user id → (raw device id, its type, MD5),
/// from its identity table as the spec names it.
fn social_devices(
    spec: &str,
) -> std::collections::HashMap<String, (String, String, jingteng_audience::rta::DeviceMd5)> {
    use jingteng_engine::datafusion::arrow::array::Array as _;
    let spec = std::path::Path::new(spec);
    let collab = jingteng_match::read_spec(spec).unwrap();
    let party = collab
        .parties()
        .iter()
        .find(|p| p.name == "social")
        .unwrap();
    let path = spec.parent().unwrap().join(&party.identity.path);
    let md5s = jingteng_audience::device_md5s(&collab, "social", &path).unwrap();
    let cols = ["user_id", "device_id", "device_type"].map(String::from);
    let mut reader = jingteng_match::read::ColumnReader::open(&path, &cols).unwrap();
    let mut out = std::collections::HashMap::new();
    while let Some(b) = reader.next_batch().unwrap() {
        for i in 0..b[0].len() {
            let cell = |c: usize| jingteng_match::read::cell(&b[c], i).map(str::to_string);
            if let (Some(id), Some(raw), Some(kind)) = (cell(0), cell(1), cell(2))
                && let Some(md5) = md5s.get(&id)
            {
                out.insert(id, (raw, kind, *md5));
            }
        }
    }
    out
}

/// The match report's overlap against truth.json's linkable figures.
fn assert_linkable(root: &std::path::Path, report: &serde_json::Value) {
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("world/truth.json")).unwrap())
            .unwrap();
    for (key, t) in truth["overlap"].as_object().unwrap() {
        assert_eq!(
            report["overlap"][key]["matched"], t["linkable"],
            "overlap.{key}"
        );
    }
}

/// Three separate `jingteng serve` processes on loopback (social, retail as host,
/// brand) match the synthetic world exactly as truth.json says; the brand then queries
/// the host.
#[test]
fn three_serve_processes_match_over_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let p = |rel: &str| root.join(rel).to_str().unwrap().to_string();
    let run = ok;
    three_nodes(root, "tiny", "13");
    let servers = Servers(
        ["social", "retail", "brand"]
            .iter()
            .map(|party| serve(root, party))
            .collect(),
    );
    // The servers take a moment to listen: retry the match until the host answers.
    let mut report = None;
    for _ in 0..100 {
        let o = jingteng(&[
            "match",
            "--collab",
            "synth-13",
            "--dir",
            &p("retail"),
            "--json",
        ]);
        if o.status.success() {
            report = Some(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let report = report.expect("the networked match ran");
    // The brand's analyst asks the host; a query that would release identifiers is
    // refused with the rule and exit status 3, as in local mode.
    let sql = "SELECT level, COUNT(DISTINCT person) AS people FROM retail.users GROUP BY level";
    let answer = run(&[
        "query",
        "--collab",
        "synth-13",
        "--dir",
        &p("brand"),
        "--json",
        sql,
    ])
    .stdout;
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert!(!answer["rows"].as_array().unwrap().is_empty(), "{answer}");
    assert!(
        answer["budget"]["spent"].as_f64().unwrap() > 0.0,
        "{answer}"
    );
    let refused = jingteng(&[
        "query",
        "--collab",
        "synth-13",
        "--dir",
        &p("brand"),
        "SELECT phone FROM retail.users",
    ]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused [identifier]"));
    // A social user is forgotten at social's node: the next networked match leaves the
    // record out (social neither blinds nor shares it), so the host's report and view
    // no longer hold it. A node records requests about its own party's records only.
    let users = std::fs::read_to_string(root.join("world/social/users.csv")).unwrap();
    let user = users.lines().nth(1).unwrap().split(',').next().unwrap();
    let social = p("social");
    let forget = |party: Option<&str>| {
        let mut args = vec![
            "forget", "--collab", "synth-13", "--dir", &social, "--id", user, "--delete", "--json",
        ];
        if let Some(party) = party {
            args.extend(["--party", party]);
        }
        jingteng(&args)
    };
    let o = forget(Some("retail"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("own records only"), "{}", stderr(&o));
    let o = forget(None);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            v["recorded"]["party"].as_str(),
            v["recorded"]["new"].as_bool()
        ),
        (Some("social"), Some(true)),
        "{v}"
    );
    let help = String::from_utf8_lossy(&ok(&["forget", "--help"]).stdout).to_string();
    assert!(
        help.contains("--collab") && help.contains("next networked match"),
        "{help}"
    );
    let again = run(&[
        "match",
        "--collab",
        "synth-13",
        "--dir",
        &p("retail"),
        "--json",
    ])
    .stdout;
    let again: serde_json::Value = serde_json::from_slice(&again).unwrap();
    assert_eq!(
        again["records"]["social"].as_u64().unwrap() + 1,
        report["records"]["social"].as_u64().unwrap()
    );
    assert_eq!(again["records"]["retail"], report["records"]["retail"]);
    drop(servers);
    let jobs = run(&["jobs", "--dir", &p("retail"), "--json"]).stdout;
    let jobs: serde_json::Value = serde_json::from_slice(&jobs).unwrap();
    assert_eq!(jobs[0]["state"], "done", "{jobs}");
    assert_linkable(root, &report);
}

/// The host's process is killed (SIGKILL) in the middle of a match and started again:
/// the run resumes from what it kept, the `jingteng match` that started it follows it
/// through the outage, and the result is exactly the linkable truth.
#[test]
fn a_host_process_killed_mid_match_resumes_and_its_follower_gets_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let p = |rel: &str| root.join(rel).to_str().unwrap().to_string();
    // Big enough that the members' contributions arrive seconds apart.
    three_nodes(root, "20000", "17");
    let mut servers = Servers(
        ["social", "brand", "retail"]
            .iter()
            .map(|party| serve(root, party))
            .collect(),
    );
    // Wait for the host to listen, then start the match and follow it in the background.
    let config = std::fs::read_to_string(root.join("retail/node.toml")).unwrap();
    let listen = config
        .lines()
        .find_map(|l| l.strip_prefix("listen = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    for attempt in 0.. {
        if std::net::TcpStream::connect(&listen).is_ok() {
            break;
        }
        assert!(attempt < 300, "the host never listened on {listen}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let follower = Command::new(env!("CARGO_BIN_EXE_jingteng"))
        .args([
            "match",
            "--collab",
            "synth-17",
            "--dir",
            &p("retail"),
            "--json",
            "--timeout",
            "600",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the host as soon as it has kept its first contribution (and not yet linked).
    let runs = root.join("retail/runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let run = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no contribution arrived"
        );
        let kept = std::fs::read_dir(&runs).ok().and_then(|d| {
            d.flatten().find_map(|run| {
                let contributions = std::fs::read_dir(run.path())
                    .ok()?
                    .flatten()
                    .filter(|f| f.file_name().to_string_lossy().ends_with(".contrib"))
                    .count();
                (contributions > 0).then(|| run.path())
            })
        });
        if let Some(run) = kept {
            servers.0[2].kill().unwrap();
            servers.0[2].wait().unwrap();
            break run;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(
        !run.join("report.json").exists(),
        "killed too late: the run had finished"
    );
    // No half-written table is visible: the view does not exist yet.
    assert!(!root.join("retail/views").exists());
    servers.0[2] = serve(root, "retail");
    let out = follower.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_linkable(root, &report);
    drop(servers);
    let jobs: serde_json::Value =
        serde_json::from_slice(&ok(&["jobs", "--dir", &p("retail"), "--json"]).stdout).unwrap();
    assert_eq!(
        (jobs[0]["state"].as_str(), jobs[0]["attempts"].as_i64()),
        (Some("done"), Some(2)),
        "{jobs}"
    );
    ok(&["audit", "verify", "--dir", &p("retail")]);
}

/// `bench network` runs the match between two nodes on loopback and counts what crosses
/// the wire: per record and identifier type, the host's own point out to the member and
/// back (64 bytes) with its join key and row to itself, and the member's point handed to
/// the host to keep (32 bytes and a row): between 50 and 80 bytes on average.
#[test]
fn bench_network_counts_the_bytes_between_two_nodes() {
    let o = ok(&["bench", "network", "--records", "2000", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["matched"], 1000, "{r}");
    let per = r["bytes_per_record_per_key"].as_f64().unwrap();
    assert!((50.0..80.0).contains(&per), "{r}");
    assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn audiences_create_deliver_list_and_forget() {
    let tmp = tempfile::tempdir().unwrap();
    let world = tmp.path().join("world");
    let o = jingteng(&[
        "synth",
        "--out",
        world.to_str().unwrap(),
        "--scale",
        "tiny",
        "--seed",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let spec = world.join("collab.toml");
    let spec = spec.to_str().unwrap();
    // Under the minimum: refused with the size class, exit 3.
    let o = jingteng(&[
        "audience",
        "create",
        "--spec",
        spec,
        "--name",
        "few",
        "--include",
        "retail.orders.category = 'baby' AND ts within 1 days",
        "--as-of",
        "2026-06-30",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("fewer than 1,000"), "{}", stderr(&o));
    // An identifier in a rule: refused, exit 3.
    let o = jingteng(&[
        "audience",
        "create",
        "--spec",
        spec,
        "--name",
        "ids",
        "--include",
        "social.users.phone_md5 = 'x'",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refused [identifier]"),
        "{}",
        stderr(&o)
    );
    let o = jingteng(&[
        "audience",
        "create",
        "--spec",
        spec,
        "--name",
        "hair",
        "--include",
        "retail.orders.category = 'hair_care'",
        "--exclude",
        "brand.crm",
        "--min-size",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["size"]["release"]["mode"], "dp");
    let o = jingteng(&[
        "audience", "deliver", "hair", "--spec", spec, "--rta", "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["delivered"]["version"], 1);
    let file = world
        .join(".jingteng")
        .join(v["delivered"]["file"].as_str().unwrap());
    assert!(file.exists());
    assert_eq!(v["rta"]["campaigns"][0], "hair");
    let o = jingteng(&[
        "audience", "deliver", "hair", "--spec", spec, "--to", "retail",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = jingteng(&["audience", "list", "--spec", spec, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], "hair");
    assert_eq!(v[0]["versions"], 1);
    let o = jingteng(&["audience", "show", "hair", "--spec", spec]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("hair_care"));
    // A user of the delivered audience (one with a device id) opts out: out of the next
    // version, and at once out of the RTA answers of `jingteng rta serve`.
    let users = std::fs::read_to_string(world.join("social/users.csv")).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let devices = social_devices(spec);
    let delivered = |id: &str| bytes.windows(id.len()).any(|w| w == id.as_bytes());
    let member = users
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .find(|id| delivered(id) && devices.contains_key(*id))
        .unwrap()
        .to_string();
    let stranger = devices.keys().find(|id| !delivered(id)).unwrap().clone();
    let mut rta = Command::new(env!("CARGO_BIN_EXE_jingteng"))
        .args([
            "rta",
            "serve",
            "--spec",
            spec,
            "--listen",
            "127.0.0.1:0",
            "--reload-every",
            "1",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let rta_err = rta.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut all = String::new();
        for line in std::io::BufReader::new(rta_err).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("RTA: GET http://") {
                let _ = tx.send(rest.split('/').next().unwrap().to_string());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("jingteng rta serve says where it listens");
    let md5 = |id: &str| devices[id].2.to_hex();
    assert_eq!(rta_get(&addr, "hair", &md5(&member))["bid"], true);
    assert_eq!(rta_get(&addr, "hair", &md5(&member))["multiplier"], 1.0);
    assert_eq!(rta_get(&addr, "hair", &md5(&stranger))["bid"], false);
    let o = jingteng(&[
        "forget",
        "--spec",
        spec,
        "--party",
        "social",
        "--id",
        &member,
        "--opt-out",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["excluded_people"], 1);
    // The server sees the rebuilt view within a reload and swaps a new index in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while rta_get(&addr, "hair", &md5(&member))["bid"] == true {
        assert!(
            std::time::Instant::now() < deadline,
            "the opt-out never reached RTA"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let stopped = Command::new("kill")
        .args(["-TERM", &rta.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(rta.wait().unwrap().success());
    let log = log.join().unwrap();
    assert!(log.contains("RTA index replaced"), "{log}");
    let o = jingteng(&["audience", "deliver", "hair", "--spec", spec, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["delivered"]["version"], 2);
    let v2 = std::fs::read(
        world
            .join(".jingteng")
            .join(v["delivered"]["file"].as_str().unwrap()),
    )
    .unwrap();
    assert!(!v2.windows(member.len()).any(|w| w == member.as_bytes()));
}

/// Audiences across three `jingteng serve` processes: the brand creates and delivers an
/// audience through the host; the media node (social) holds exactly the user ids local
/// mode delivers for the same rules over the same world (which the audience crate's
/// tests check against the plaintext rules); an opt-out recorded at the media node
/// leaves the next version; an under-size audience is refused with its class, exit 3.
#[test]
fn audiences_through_the_host_reach_the_media_node_as_in_local_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let p = |rel: &str| root.join(rel).to_str().unwrap().to_string();
    let spec = three_nodes(root, "tiny", "15");
    // The brand, the audience's owner, also answers RTA requests.
    let rta_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rta = format!("127.0.0.1:{rta_port}");
    let _servers = Servers(vec![
        serve(root, "social"),
        serve(root, "retail"),
        serve_rta(root, "brand", &rta),
    ]);
    let mut matched = false;
    for _ in 0..100 {
        let o = jingteng(&["match", "--collab", "synth-15", "--dir", &p("retail")]);
        if o.status.success() {
            matched = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(matched, "the networked match ran");
    let rules = [
        "--name",
        "hair",
        "--include",
        "retail.orders.category = 'hair_care'",
        "--exclude",
        "brand.crm",
        "--min-size",
        "1",
        "--json",
    ];
    let net = ["--collab", "synth-15", "--dir"];
    let mut args = vec!["audience", "create"];
    args.extend(net);
    let brand = p("brand");
    args.push(&brand);
    args.extend(rules);
    let v: serde_json::Value = serde_json::from_slice(&ok(&args).stdout).unwrap();
    assert_eq!(v["size"]["release"]["mode"], "dp", "{v}");
    assert_eq!(v["owner"], "brand");
    // Under its minimum: the class only, exit 3.
    let o = jingteng(&[
        "audience",
        "create",
        "--collab",
        "synth-15",
        "--dir",
        &brand,
        "--name",
        "big",
        "--include",
        "retail.orders.category = 'hair_care'",
        "--min-size",
        "1000000",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("fewer than 1,000,000"),
        "{}",
        stderr(&o)
    );

    let deliver = |n: u32| {
        let o = ok(&[
            "audience", "deliver", "hair", "--collab", "synth-15", "--dir", &brand, "--rta",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["record"]["version"], n, "{v}");
        assert_eq!(v["record"]["to"], "social");
        // The media node sent the brand the version's device tokens.
        assert_eq!(v["rta"]["owner"], "brand", "{v}");
        assert_eq!(v["rta"]["pushed"], true, "{v}");
        assert_eq!(v["rta_held"]["version"], n, "{v}");
        assert_eq!(v["rta_held"]["from"], "social", "{v}");
        let social = jingteng_node::NodeDir::open(&root.join("social")).unwrap();
        jingteng_node::delivered_ids(&social, "synth-15", "hair", n)
            .unwrap()
            .into_iter()
            .collect::<std::collections::BTreeSet<String>>()
    };
    let networked = deliver(1);

    // Local mode, the same rules over the same world.
    let local = p("local");
    let mut args = vec!["audience", "create", "--spec", &spec, "--state", &local];
    args.extend(rules);
    ok(&args);
    let o = ok(&[
        "audience", "deliver", "hair", "--spec", &spec, "--state", &local, "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let record: jingteng_audience::VersionRecord =
        serde_json::from_value(v["delivered"].clone()).unwrap();
    let in_local: std::collections::BTreeSet<String> = jingteng_audience::Store::new(&local)
        .delivered_ids(&record)
        .unwrap()
        .into_iter()
        .collect();
    assert!(in_local.len() > 20, "{}", in_local.len());
    assert_eq!(networked, in_local);

    // RTA at the brand's `serve --rta-listen`: yes for the token of a delivered user,
    // computed by `jingteng rta token` from the raw device id or its MD5 alike (and as
    // the media node's key gives it); no for a user not in the audience.
    let dev = social_devices(&spec);
    let token_of = |u: &str| {
        let (raw, kind, md5) = &dev[u];
        let by_raw = ok(&[
            "rta",
            "token",
            "--dir",
            &p("social"),
            "--device-type",
            kind,
            "--device",
            raw,
        ]);
        let by_md5 = ok(&[
            "rta",
            "token",
            "--dir",
            &p("social"),
            "--device-md5",
            &md5.to_hex(),
        ]);
        let t = String::from_utf8(by_raw.stdout).unwrap().trim().to_string();
        assert_eq!(t, String::from_utf8(by_md5.stdout).unwrap().trim());
        let social = jingteng_node::NodeDir::open(&root.join("social")).unwrap();
        assert_eq!(t, jingteng_node::rta_token(&social, *md5).unwrap().to_hex());
        assert_eq!(t.len(), 32);
        t
    };
    let member = networked.iter().find(|u| dev.contains_key(*u)).unwrap();
    assert_eq!(rta_get(&rta, "hair", &token_of(member))["bid"], true);
    let members: std::collections::BTreeSet<_> = networked
        .iter()
        .filter_map(|u| dev.get(u).map(|d| d.2))
        .collect();
    let stranger = dev
        .iter()
        .find(|(u, d)| !networked.contains(*u) && !members.contains(&d.2))
        .unwrap()
        .0;
    assert_eq!(rta_get(&rta, "hair", &token_of(stranger))["bid"], false);
    // The plain MD5 means nothing to the brand.
    assert_eq!(rta_get(&rta, "hair", &dev[member].2.to_hex())["bid"], false);

    // The media node's operator records an opt-out: out of the next version, and the
    // brand's RTA endpoint says no for the user's token at once.
    let gone = member.clone();
    let gone_token = token_of(&gone);
    let o = ok(&[
        "forget",
        "--collab",
        "synth-15",
        "--dir",
        &p("social"),
        "--id",
        &gone,
        "--opt-out",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("RTA: brand suppressed"), "{out}");
    assert_eq!(rta_get(&rta, "hair", &gone_token)["bid"], false);
    let second = deliver(2);
    assert_eq!(rta_get(&rta, "hair", &gone_token)["bid"], false);
    let mut want = networked.clone();
    want.remove(&gone);
    assert_eq!(second, want);

    // The brand lists the host's audiences (two versions) and holds no ids itself; the
    // media node lists what it holds.
    let o = ok(&[
        "audience", "list", "--collab", "synth-15", "--dir", &brand, "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["audiences"][0]["versions"].as_array().unwrap().len(),
        2,
        "{v}"
    );
    assert_eq!(v["delivered_here"].as_array().unwrap().len(), 0);
    assert_eq!(v["rta_held"][0]["audience"], "hair", "{v}");
    assert_eq!(v["rta_held"][0]["version"], 2, "{v}");
    let o = ok(&[
        "audience",
        "list",
        "--collab",
        "synth-15",
        "--dir",
        &p("social"),
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("delivered to this node (social)"));
}

/// `jingteng … | head`: when the reader of stdout is gone the command stops quietly
/// (status 141, as a SIGPIPE death), with no panic message.
#[test]
fn a_closed_stdout_stops_a_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jingteng"))
        .args(["synth", "--scale", "tiny", "--out"])
        .arg(tmp.path().join("world"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the world is written, so the first line printed finds no reader.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

//! `jingteng demo`: a synthetic world, four real nodes on loopback under one signed
//! contract, the networked match checked against local mode and the world's truth,
//! insight and measurement asked of the host, and `report.json`.
//!
//! The report is one JSON object; each capability adds its own top-level key as it
//! lands (`match`, `insight`, `audience`, `attribution`, `lift`, `reach`).
//! See docs/demo.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jingteng_node::NodeDir;
use jingteng_node::contract::{self, ContractStatus};
use serde_json::{Value, json};

use crate::{matching, node::shutdown_signal, parse_scale, progress_bar};

/// The scale `jingteng demo` uses unless told otherwise: small enough that a debug
/// build finishes in well under a minute on two cores.
const DEFAULT_SCALE: &str = "tiny";

/// The parties of the synthetic world's spec, in spec order, each with the table that
/// holds its identifiers (what it imports and matches).
const PARTIES: [(&str, &str); 4] = [
    ("social", "users"),
    ("retail", "users"),
    ("brand", "crm"),
    ("news", "users"),
];

/// The analyst at the brand who asks the host for the campaign measurements.
const MEASURE_ANALYST: &str = "measurement";

/// The privacy budget per analyst in the demo's contract (the synthetic spec's is 10):
/// enough for the insight step and for measuring each of the brand's campaigns one by
/// one under DP at ε 0.5 per query.
const DEMO_BUDGET: f64 = 100.0;

/// The party the synthetic spec names host: it proposes the contract and runs the match.
const HOST: &str = "retail";

/// How long the networked match may take before the demo gives up.
const MATCH_TIMEOUT_SECS: u64 = 1800;

/// What a previous demo leaves in its directory: only these are replaced by --force.
const DEMO_ENTRIES: [&str; 5] = ["world", "nodes", "report.json", "report.html", "truth.json"];

/// Runs the whole loop on a synthetic world with four real nodes on loopback.
///
/// Generates a world (as `jingteng synth --media 2`) into DIR/world; creates a node for
/// each party (social, retail as host, brand, and the second media party news) under
/// DIR/nodes/<party>/ on free loopback ports; proposes the world's collab.toml as a
/// contract at the host and signs it at every node; each party imports its tables into
/// its node; starts the nodes in this process (mutual TLS, pinned by the contract); runs
/// the networked match from the host and checks it against the local-mode match of the
/// same world and against the world's truth.json; the brand's node asks the host for
/// insight (overlap, audience profile) and for attribution, lift and reach of each of
/// the brand's campaigns, all released under the contract's privacy rules (DP). Prints
/// a summary and writes DIR/report.json (with truth.json next to it). Then keeps the
/// nodes up until Ctrl-C, unless --no-serve, and prints each node's web dashboard URL
/// (with its operator token).
///
/// See docs/demo.md and docs/dashboard.md.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Directory for everything the demo makes: world/, nodes/<party>/, report.json,
    /// truth.json. Created; must be empty unless --force.
    #[arg(long, value_name = "DIR", default_value = "demo")]
    out: PathBuf,
    /// tiny (5 k people), small (50 k), medium (1 M), large (10 M), or a number of
    /// people. In a debug build on two cores tiny takes about 30 s, small about 3.5
    /// minutes; at tiny most per-campaign attribution and lift stays under the privacy
    /// threshold (the report says so), small releases them.
    #[arg(long, default_value = DEFAULT_SCALE)]
    scale: String,
    /// Random seed of the world.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Replace a previous demo in DIR (only what a demo makes there is removed; any
    /// other file makes the demo refuse).
    #[arg(long)]
    force: bool,
    /// Stop the nodes and exit once the report is written, instead of serving until
    /// Ctrl-C.
    #[arg(long)]
    no_serve: bool,
    /// Print report.json on standard output instead of the summary (progress and the
    /// nodes' addresses go to standard error).
    #[arg(long)]
    json: bool,
}

/// One party's node while the demo runs.
struct DemoNode {
    party: &'static str,
    table: &'static str,
    node: NodeDir,
    listener: std::net::TcpListener,
    /// Holds the dashboard's port until the node serves (and binds it itself).
    dashboard: std::net::TcpListener,
    rows: u64,
}

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    let scale = parse_scale(&args.scale)?;
    let out = args.out.as_path();
    prepare(out, args.force)?;
    let started = Instant::now();
    let step = |n: u32, text: String| eprintln!("[{n}/{STEPS}] {text}");

    // 1. The world.
    let world = out.join("world");
    let config = jingteng_synth::Config {
        seed: args.seed,
        scale,
        force: false,
        media: 2,
    };
    let bar = progress_bar(scale.people(), "people");
    bar.set_message("generating the world");
    let summary = jingteng_synth::generate(&config, &world, &|done, _total| bar.set_position(done))
        .with_context(|| format!("generating the synthetic world in {}", world.display()))?;
    bar.finish_and_clear();
    let spec = world.join("collab.toml");
    raise_budget(&spec)?;
    let truth_path = out.join("truth.json");
    std::fs::copy(world.join("truth.json"), &truth_path)
        .with_context(|| format!("copying the world's truth.json to {}", truth_path.display()))?;
    let truth = summary.truth;
    step(
        1,
        format!(
            "world: {} people (seed {}) in {} ({:.1} s)",
            scale.people(),
            args.seed,
            world.display(),
            summary.elapsed.as_secs_f64()
        ),
    );

    // 2. The nodes, each on a free loopback port.
    let nodes_dir = out.join("nodes");
    let mut nodes = Vec::new();
    for (party, table) in PARTIES {
        let dir = nodes_dir.join(party);
        jingteng_node::init(&dir, party)
            .with_context(|| format!("creating the {party} node in {}", dir.display()))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .with_context(|| format!("finding a free loopback port for the {party} node"))?;
        let addr = listener
            .local_addr()
            .with_context(|| format!("the {party} node's loopback port"))?;
        let dashboard = std::net::TcpListener::bind("127.0.0.1:0")
            .with_context(|| format!("finding a free loopback port for the {party} dashboard"))?;
        let dashboard_addr = dashboard
            .local_addr()
            .with_context(|| format!("the {party} dashboard's loopback port"))?;
        let mut node = NodeDir::open(&dir)?;
        node.set_listen(&addr.to_string())?;
        node.set_dashboard(Some(&dashboard_addr.to_string()))?;
        nodes.push(DemoNode {
            party,
            table,
            node,
            listener,
            dashboard,
            rows: 0,
        });
    }
    step(
        2,
        format!(
            "nodes: {} under {}",
            nodes
                .iter()
                .map(|n| format!("{} on {}", n.party, n.node.config().listen))
                .collect::<Vec<_>>()
                .join(", "),
            nodes_dir.display()
        ),
    );

    // 3. The contract: the host proposes the world's spec, every other member signs,
    // every node records the fully signed contract.
    let host = nodes
        .iter()
        .position(|n| n.party == HOST)
        .context("internal error (this is a bug): the host is not among the parties")?;
    let cards = nodes
        .iter()
        .filter(|n| n.party != HOST)
        .map(|n| contract::card(&n.node))
        .collect::<Result<Vec<_>, _>>()?;
    let mut c = contract::propose(&nodes[host].node, &spec, cards)
        .with_context(|| format!("proposing {} as a contract at {HOST}", spec.display()))?;
    let mut status: Option<ContractStatus> = None;
    for n in nodes.iter().filter(|n| n.party != HOST) {
        status = Some(
            contract::sign(&n.node, &mut c)
                .with_context(|| format!("signing the contract at {}", n.party))?,
        );
    }
    let status = status.map_or_else(|| c.status(), Ok)?;
    if !status.active {
        anyhow::bail!(
            "the contract is not active after every node signed; pending: {}",
            status.pending.join(", ")
        );
    }
    for n in &nodes {
        contract::record(&n.node, &c, &status, "activate")
            .with_context(|| format!("recording the contract at {}", n.party))?;
    }
    let contract_path = nodes_dir.join("contract.json");
    c.write(&contract_path)?;
    step(
        3,
        format!(
            "contract {} ({}…): proposed by {HOST}, signed by {}, active",
            status.collaboration,
            &status.contract_sha256[..16],
            status.signed.join(", ")
        ),
    );

    // 4. Each party imports its tables into its own node (the identity table first).
    let collab = jingteng_match::read_spec(&spec)?;
    for n in &mut nodes {
        let party = collab
            .parties()
            .iter()
            .find(|p| p.name == n.party)
            .with_context(|| format!("no party {} in the spec", n.party))?;
        for t in party.all_tables() {
            let made = jingteng_node::import(&n.node, &spec, &t.name, None)
                .with_context(|| format!("importing {}/{} into its node", n.party, t.name))?;
            if t.name == n.table {
                n.rows = made.rows;
            }
        }
    }
    step(
        4,
        format!(
            "imported {}",
            nodes
                .iter()
                .map(|n| format!("{}/{} ({} rows)", n.party, n.table, n.rows))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );

    // 5. Serve all four in this process; the host runs the networked match.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    let mut members = Vec::new();
    let mut dashboards = Vec::new();
    for n in nodes {
        let card = contract::card(&n.node)?;
        members.push((n.party, n.table, n.rows, card));
        if let Some(addr) = jingteng_node::dashboard_addr(&n.node)? {
            let tokens = jingteng_node::dashboard_tokens(&n.node)
                .with_context(|| format!("the {} dashboard's tokens", n.party))?;
            dashboards.push((n.party, addr, tokens));
        }
        // The node binds its dashboard's port itself when it starts serving.
        drop(n.dashboard);
        let mut stopped = stopped.clone();
        n.listener
            .set_nonblocking(true)
            .with_context(|| format!("the {} node's listener", n.party))?;
        let party = n.party;
        let (node, listener) = (n.node, n.listener);
        servers.push((
            party,
            runtime.spawn(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                jingteng_node::serve(&node, listener, async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await?;
                anyhow::Ok(())
            }),
        ));
    }
    let host_node = NodeDir::open(&nodes_dir.join(HOST))?;
    let networked_started = Instant::now();
    let networked = runtime.block_on(async {
        for (party, _, _, card) in &members {
            wait_healthy(&host_node, party, card).await?;
        }
        matching::start_and_follow(
            &host_node,
            &status.collaboration,
            MATCH_TIMEOUT_SECS,
            "the demo's nodes run in this process; one of them stopped",
        )
        .await
    });
    let networked = match networked {
        Ok(r) => r,
        Err(e) => {
            stop_servers(&runtime, &stop, servers);
            return Err(e.context("the networked match"));
        }
    };
    let networked_secs = networked_started.elapsed().as_secs_f64();
    let local_started = Instant::now();
    let local = matching::local(&spec).context("the local-mode match (the check)")?;
    let local_secs = local_started.elapsed().as_secs_f64();
    let differences = differences(&networked, &local);
    let off_truth = off_truth(&networked, &truth);
    step(
        5,
        format!(
            "networked match at {HOST} in {networked_secs:.1} s; local-mode check in {local_secs:.1} s: {}",
            if differences.is_empty() {
                "equal".to_string()
            } else {
                format!("DIFFERENT ({})", differences.join(", "))
            }
        ),
    );

    // 6. Insight: the brand's analyst asks the host over the network; the host answers
    // on its joined view under the collaboration's privacy rules (DP by default).
    let insight_started = Instant::now();
    let brand_node = NodeDir::open(&nodes_dir.join("brand"))?;
    let insight = match runtime.block_on(insight(&brand_node, &status.collaboration, &truth)) {
        Ok(v) => v,
        Err(e) => {
            stop_servers(&runtime, &stop, servers);
            return Err(e.context("the insight step"));
        }
    };
    step(
        6,
        format!(
            "insight at {HOST}: overlap and audience profile under differential privacy ({:.1} s)",
            insight_started.elapsed().as_secs_f64()
        ),
    );

    // 7. An audience: the brand defines it at the host, the host releases its size and
    // delivers it to the social node as social's own user ids.
    let audience_started = Instant::now();
    let social_node = NodeDir::open(&nodes_dir.join("social"))?;
    let audience =
        match runtime.block_on(audience(&brand_node, &social_node, &status.collaboration)) {
            Ok(v) => v,
            Err(e) => {
                stop_servers(&runtime, &stop, servers);
                return Err(e.context("the audience step"));
            }
        };
    step(
        7,
        format!(
            "audience {:?} defined by brand at {HOST}, its size released under differential privacy, delivered to social as social's own user ids ({:.1} s)",
            audience["name"].as_str().unwrap_or("?"),
            audience_started.elapsed().as_secs_f64()
        ),
    );

    // 8. Measurement: the brand's analyst asks the host for attribution, lift and reach
    // of each of the brand's campaigns.
    let measure_started = Instant::now();
    let (attribution, lift, reach) =
        match runtime.block_on(measurement(&brand_node, &status.collaboration, &truth)) {
            Ok(v) => v,
            Err(e) => {
                stop_servers(&runtime, &stop, servers);
                return Err(e.context("the measurement step"));
            }
        };
    step(
        8,
        format!(
            "measurement at {HOST}: attribution, lift and reach of {} campaigns of {} ({:.1} s)",
            attribution["campaigns"].as_array().map_or(0, Vec::len),
            attribution["brand"].as_str().unwrap_or("?"),
            measure_started.elapsed().as_secs_f64()
        ),
    );

    // The report.
    let report = json!({
        "audience": audience,
        "insight": insight,
        "attribution": attribution,
        "lift": lift,
        "reach": reach,
        "jingteng": { "version": env!("CARGO_PKG_VERSION"), "command": "demo" },
        "world": {
            "dir": "world",
            "seed": args.seed,
            "scale": scale.name(),
            "people": truth["people"],
        },
        "truth": "truth.json",
        "nodes": members.iter().map(|(party, table, rows, card)| {
            (party.to_string(), json!({
                "dir": format!("nodes/{party}"),
                "endpoint": card.endpoint,
                "cert_sha256": card.cert_sha256,
                "host": *party == HOST,
                "dashboard": dashboards.iter().find(|d| d.0 == *party).map(|d| format!("http://{}/", d.1)),
                "imported": { "table": table, "rows": rows },
            }))
        }).collect::<serde_json::Map<_, _>>(),
        "contract": {
            "file": "nodes/contract.json",
            "collaboration": status.collaboration,
            "sha256": status.contract_sha256,
            "signed": status.signed,
        },
        "match": networked,
        "checks": {
            "networked_equals_local": differences.is_empty(),
            "networked_differs_from_local_in": differences,
            "matched_equals_truth_linkable": off_truth.is_empty(),
            "differs_from_truth": off_truth,
        },
        "seconds": {
            "world": summary.elapsed.as_secs_f64(),
            "networked_match": networked_secs,
            "local_match": local_secs,
            "insight": insight_started.elapsed().as_secs_f64(),
            "measurement": measure_started.elapsed().as_secs_f64(),
            "audience": audience_started.elapsed().as_secs_f64(),
            "total": started.elapsed().as_secs_f64(),
        },
    });
    let report_path = out.join("report.json");
    let tmp = out.join("report.json.partial");
    std::fs::write(&tmp, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &report_path)
        .with_context(|| format!("writing {}", report_path.display()))?;
    let html_path = out.join("report.html");
    let tmp = out.join("report.html.partial");
    std::fs::write(&tmp, crate::demo_html::render(&report))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &html_path)
        .with_context(|| format!("writing {}", html_path.display()))?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(out, &report, &truth, &differences);
    }
    for d in &differences {
        eprintln!(
            "warning: the networked match's `{d}` differs from the local-mode match of the same world; this is a bug, please report it with {}",
            report_path.display()
        );
    }
    if !off_truth.is_empty() {
        eprintln!(
            "warning: matched counts differ from truth.json's linkable figures: {}",
            off_truth.join("; ")
        );
    }

    if args.no_serve {
        stop_servers(&runtime, &stop, servers);
        return Ok(());
    }
    let say = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(String::new());
    say(
        "The four nodes are up (mutual TLS; only the contract's members get in), until Ctrl-C:"
            .into(),
    );
    for (party, _, _, card) in &members {
        say(format!(
            "  {party:<7} https://{}/v1/health{}",
            card.endpoint,
            if *party == HOST { "   (host)" } else { "" }
        ));
    }
    if let Some((peer, _, _, card)) = members.iter().find(|m| m.0 != HOST) {
        let d = nodes_dir.display();
        say(format!(
            "Ask the {peer} node for its health as the {HOST} node would:\n  curl --cacert {d}/{peer}/tls/cert.pem --cert {d}/{HOST}/tls/cert.pem --key {d}/{HOST}/secrets/tls.key.pem https://{}/v1/health",
            card.endpoint,
        ));
    }
    say(String::new());
    say("The dashboards, one per node (open in a browser; each URL holds that node's operator token, keep it to yourself):".into());
    for (party, addr, tokens) in &dashboards {
        say(format!(
            "  {party:<7} {}{}",
            jingteng_node::dashboard_url(*addr, tokens.operator()),
            if *party == HOST {
                "   (host: match runs and reports)"
            } else {
                ""
            }
        ));
    }
    say(format!(
        "Read-only (analyst) access: the same address with the token in {}/<party>/{}.",
        nodes_dir.display(),
        jingteng_node::ANALYST_TOKEN_FILE
    ));
    runtime.block_on(shutdown_signal());
    eprintln!("stopping the nodes…");
    stop_servers(&runtime, &stop, servers);
    eprintln!("stopped");
    Ok(())
}

/// The demo's steps, as its progress lines count them.
const STEPS: u32 = 8;

/// Gives every party of the demo's spec the budget [`DEMO_BUDGET`] per analyst.
fn raise_budget(spec: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    let from = "budget = 10.0";
    if !text.contains(from) {
        anyhow::bail!(
            "internal error (this is a bug): {} no longer sets `{from}`",
            spec.display()
        );
    }
    let text = text.replace(from, &format!("budget = {DEMO_BUDGET:.1}"));
    std::fs::write(spec, text).with_context(|| format!("writing {}", spec.display()))
}

/// Makes `out` ready: created if missing; if it holds anything, refused without
/// `force`, and with it only a previous demo's entries are removed.
fn prepare(out: &Path, force: bool) -> anyhow::Result<()> {
    if !out.exists() {
        return std::fs::create_dir_all(out)
            .with_context(|| format!("creating the demo directory {}", out.display()));
    }
    if !out.is_dir() {
        anyhow::bail!("{}: exists and is not a directory", out.display());
    }
    let mut entries = Vec::new();
    for e in std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let e = e.with_context(|| format!("reading {}", out.display()))?;
        entries.push(e.file_name().to_string_lossy().into_owned());
    }
    if entries.is_empty() {
        return Ok(());
    }
    if !force {
        anyhow::bail!(
            "{}: exists and is not empty (use --force to replace the demo there, or choose another --out)",
            out.display()
        );
    }
    entries.sort();
    let ours = |name: &str| {
        DEMO_ENTRIES.contains(&name)
            || name.ends_with(".partial")
            || (name.starts_with(".world.") && !name.contains('/'))
    };
    let foreign: Vec<&String> = entries.iter().filter(|n| !ours(n)).collect();
    if !foreign.is_empty() {
        anyhow::bail!(
            "{}: --force replaces only a previous demo, and this directory also holds {}; choose another --out or move them away",
            out.display(),
            foreign
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for name in entries {
        let p = out.join(&name);
        let removed = if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.with_context(|| format!("removing the previous demo's {}", p.display()))?;
    }
    Ok(())
}

/// Waits until `party`'s node answers its health check (asked as the host), for up to
/// ten seconds.
async fn wait_healthy(
    host: &NodeDir,
    party: &str,
    card: &contract::MemberCard,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer =
            jingteng_node::get_from_peer(host, &card.endpoint, &card.cert_sha256, "/v1/health")
                .await;
        match answer {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) if Instant::now() > deadline => anyhow::bail!(
                "the {party} node at {} answered its health check with {status}: {}",
                card.endpoint,
                String::from_utf8_lossy(&body)
            ),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| {
                    format!(
                        "the {party} node at {} did not come up within 10 s",
                        card.endpoint
                    )
                });
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Tells every server to stop and waits for them; a server that failed says so.
fn stop_servers(
    runtime: &tokio::runtime::Runtime,
    stop: &tokio::sync::watch::Sender<bool>,
    servers: Vec<(&'static str, tokio::task::JoinHandle<anyhow::Result<()>>)>,
) {
    let _ = stop.send(true);
    runtime.block_on(async {
        for (party, server) in servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("warning: the {party} node stopped with an error: {e:#}"),
                Err(e) => eprintln!("warning: the {party} node's task failed: {e}"),
            }
        }
    });
}

/// The parts of the report in which the networked match and local mode disagree (their
/// timings aside).
fn differences(networked: &Value, local: &Value) -> Vec<String> {
    [
        "collaboration",
        "parties",
        "records",
        "identifiers",
        "overlap",
        "conflicts",
        "channels",
    ]
    .into_iter()
    .filter(|k| networked[k] != local[k])
    .map(str::to_string)
    .collect()
}

/// Where the matched counts differ from truth.json's linkable figures, one line each.
fn off_truth(report: &Value, truth: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(sets) = truth["overlap"].as_object() else {
        return vec!["truth.json has no `overlap` object".into()];
    };
    for (key, t) in sets {
        let m = &report["overlap"][key];
        if m["matched"] != t["linkable"] {
            out.push(format!(
                "{key}: matched {} vs linkable {}",
                m["matched"], t["linkable"]
            ));
        }
        for (id_type, n) in t["by_id_type"].as_object().into_iter().flatten() {
            let got = m["by_id_type"].get(id_type).unwrap_or(&Value::Null);
            // A type no channel carried is absent from the report: zero matched.
            let got_n = got.as_u64().unwrap_or(0);
            if Some(got_n) != n.as_u64() {
                out.push(format!(
                    "{key} via {id_type}: matched {got_n} vs linkable {n}"
                ));
            }
        }
    }
    out
}

/// A count for the summary: `-` when absent (a float is rounded: linear credit).
fn n(v: &Value) -> String {
    v.as_i64()
        .map(|x| x.to_string())
        .or_else(|| v.as_f64().map(|x| format!("{x:.0}")))
        .unwrap_or_else(|| "-".to_string())
}

fn print_summary(out: &Path, report: &Value, truth: &Value, differences: &[String]) {
    println!(
        "\nJingteng demo: a synthetic world of {} people, {} nodes on loopback, one signed contract ({}).",
        n(&report["world"]["people"]["world"]),
        PARTIES.len(),
        report["contract"]["collaboration"].as_str().unwrap_or("?"),
    );
    let mut people = Table::new();
    people.load_preset(UTF8_FULL_CONDENSED);
    people.set_header(["party", "node", "people", "records imported"]);
    for party in report["match"]["parties"].as_array().into_iter().flatten() {
        let party = party.as_str().unwrap_or("").to_string();
        let node = &report["nodes"][&party];
        let role = if node["host"].as_bool() == Some(true) {
            format!("{party} (host)")
        } else {
            party.clone()
        };
        people.add_row([
            role,
            node["endpoint"].as_str().unwrap_or("").to_string(),
            n(&truth["people"][&party]),
            format!(
                "{} {}",
                n(&node["imported"]["rows"]),
                node["imported"]["table"].as_str().unwrap_or("")
            ),
        ]);
    }
    println!("{people}");

    let families = ["phone", "email", "device"];
    let mut overlap = Table::new();
    overlap.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["parties".to_string(), "matched".to_string()];
    header.extend(families.iter().map(|f| format!("via {f} alone")));
    overlap.set_header(header);
    let cell = |got: &Value, want: &Value| {
        let g = got.as_u64().unwrap_or(0);
        match want.as_u64() {
            Some(w) if w == g => format!("{g} ✓"),
            Some(w) => format!("{g} ✗ (truth {w})"),
            None => g.to_string(),
        }
    };
    for (key, o) in report["match"]["overlap"].as_object().into_iter().flatten() {
        let t = &truth["overlap"][key];
        let mut row = vec![key.clone(), cell(&o["matched"], &t["linkable"])];
        row.extend(
            families
                .iter()
                .map(|f| cell(&o["by_id_type"][f], &t["by_id_type"][f])),
        );
        overlap.add_row(row);
    }
    println!("{overlap}");
    println!(
        "✓: equals truth.json's `linkable` figure (the most a perfect match can find). The networked match {} the local-mode match of the same world.",
        if differences.is_empty() {
            "equals"
        } else {
            "DIFFERS FROM"
        }
    );
    let insight = &report["insight"];
    println!(
        "\nInsight asked by {} at the host, released with differential privacy:",
        insight["analyst"].as_str().unwrap_or("?")
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "parties",
        "people (noisy)",
        "95% noise bound",
        "truth (linkable)",
    ]);
    for (set, o) in insight["overlap"].as_object().into_iter().flatten() {
        t.add_row([
            set.clone(),
            n(&o["people"]),
            o["bound95"]
                .as_f64()
                .map_or("-".into(), |b| format!("±{b}")),
            n(&o["truth_linkable"]),
        ]);
    }
    println!("{t}");
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["social age band", "people also at retail (noisy)"]);
    for r in insight["profile"]["rows"].as_array().into_iter().flatten() {
        t.add_row([r[0].as_str().unwrap_or("?").to_string(), n(&r[1])]);
    }
    println!("{t}");
    println!(
        "privacy budget of {}: ε {} spent of {}",
        insight["analyst"].as_str().unwrap_or("?"),
        insight["budget"]["spent"],
        insight["budget"]["limit"]
    );
    let a = &report["audience"];
    println!(
        "\nAudience {:?} (rules: {}), defined by the brand at the host: size class {}, released size {} (±{} at 95%, {}); delivered as version {} to social, which holds {} of its own user ids ({}).",
        a["name"].as_str().unwrap_or("?"),
        a["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; "),
        a["size_class"].as_str().unwrap_or("?"),
        n(&a["released_people"]),
        a["bound95"],
        a["release"].as_str().unwrap_or("?"),
        a["delivered"]["version"],
        n(&a["delivered"]["users_at_media"]),
        if a["released_within_bound95"] == true {
            "the released size is within its 95% noise bound of that count"
        } else {
            "the released size is OUTSIDE its 95% noise bound of that count"
        }
    );
    print_measurement(report);
    let d = out.display();
    let collab = report["contract"]["collaboration"].as_str().unwrap_or("?");
    println!(
        "Report: {d}/report.json and {d}/report.html (truth: {d}/truth.json), in {:.1} s. Each node's data: {d}/nodes/<party>/.",
        report["seconds"]["total"].as_f64().unwrap_or(0.0)
    );
    let next = [
        (
            format!("jingteng audit log --dir {d}/nodes/{HOST}"),
            "what the host did, hash-chained",
        ),
        (
            format!("jingteng jobs --dir {d}/nodes/{HOST}"),
            "the match run",
        ),
        (
            format!(
                "jingteng measure attribution --collab {collab} --dir {d}/nodes/brand --by placement"
            ),
            "measure every campaign at the host, as the brand",
        ),
        (
            format!("jingteng match --spec {d}/world/collab.toml"),
            "the same match in one process",
        ),
        (
            format!(
                "jingteng query --collab {collab} --dir {d}/nodes/brand \"SELECT level, COUNT(DISTINCT person) AS people FROM retail.users GROUP BY level\""
            ),
            "ask the host more, as the brand, while the nodes serve",
        ),
        (
            format!("jingteng audience list --collab {collab} --dir {d}/nodes/social"),
            "the audience at the host, and the versions social holds",
        ),
        (
            format!(
                "jingteng query --spec {d}/world/collab.toml \"SELECT level, COUNT(DISTINCT person) AS people FROM retail.users GROUP BY level\""
            ),
            "or in local mode over the world's files (exact figures: set mode = \"threshold\" in the spec)",
        ),
    ];
    println!("Look around:");
    for (command, what) in next {
        println!("  # {what}\n  {command}");
    }
}

/// The insight step: the overlap of the parties' users and the age profile of the
/// people social and retail share, asked by the brand's node of the host over mutual
/// TLS and answered by the host's query engine on the joined view it built from the
/// networked match, each released under the spec's rules. Every
/// overlap figure sits next to truth.json's, with whether it falls inside the stated
/// 95% noise bound.
async fn insight(brand: &NodeDir, collab: &str, truth: &Value) -> anyhow::Result<Value> {
    use jingteng_engine::templates::Insight;
    let ask = |insight: Insight| jingteng_node::InsightRequest {
        insight,
        analyst: "analyst".into(),
    };
    let overlap_steps = jingteng_node::insight_host(
        brand,
        collab,
        &ask(Insight {
            template: "overlap".into(),
            ..Insight::default()
        }),
    )
    .await?;
    let mut overlap = serde_json::Map::new();
    for step in &overlap_steps {
        let a = &step.answer;
        let key: Vec<&str> = step.title.split(" ∩ ").collect();
        // truth.json keys sets of parties in spec order, joined by "+".
        let mut parties: Vec<&str> = key.clone();
        parties.sort_by_key(|p| {
            PARTIES
                .iter()
                .position(|(o, _)| o == p)
                .unwrap_or(usize::MAX)
        });
        let set = parties.join("+");
        let noisy = a
            .rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_i64);
        let bound = a.release.noise.first().and_then(|n| n.bound95);
        let linkable = truth["overlap"][&set]["linkable"].as_i64();
        let within = match (noisy, linkable, bound) {
            (Some(n), Some(t), Some(b)) => Some(((n - t).abs() as f64) <= b),
            _ => None,
        };
        overlap.insert(
            set,
            json!({"people": noisy, "bound95": bound, "truth_linkable": linkable, "within_bound95": within}),
        );
    }
    let profile = jingteng_node::insight_host(
        brand,
        collab,
        &ask(Insight {
            template: "profile".into(),
            dimension: Some("social.users.age_band".into()),
            of: Some("retail".into()),
            ..Insight::default()
        }),
    )
    .await?;
    let p = profile
        .first()
        .context("the host answered the profile with no step")?;
    let a = &p.answer;
    Ok(json!({
        "analyst": format!("{}:analyst", brand.config().party),
        "asked": format!("by the brand's node, answered by the host {HOST} over mutual TLS"),
        "mode": a.release.mode,
        "overlap": overlap,
        "profile": {
            "title": p.title,
            "sql": p.sql,
            "columns": a.columns,
            "rows": a.rows,
            "release": a.release,
        },
        "budget": a.budget,
    }))
}

/// The measurement part of the summary: one row per campaign of the brand.
fn print_measurement(report: &Value) {
    let pct = |v: &Value| {
        v.as_f64()
            .map_or("-".into(), |x| format!("{:+.1}%", x * 100.0))
    };
    println!(
        "\nCampaigns of {}, measured by {} at the host (released with the spec's rules; truth for linked people in brackets):",
        report["attribution"]["brand"].as_str().unwrap_or("?"),
        report["attribution"]["analyst"].as_str().unwrap_or("?")
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "campaign",
        "attributed orders",
        "ROAS",
        "relative lift, 95% interval",
        "reach (de-duplicated)",
    ]);
    let empty = Vec::new();
    let lift = report["lift"]["campaigns"].as_array().unwrap_or(&empty);
    let reach = report["reach"]["campaigns"].as_array().unwrap_or(&empty);
    for a in report["attribution"]["campaigns"]
        .as_array()
        .unwrap_or(&empty)
    {
        let id = &a["campaign_id"];
        let l = lift.iter().find(|l| &l["campaign_id"] == id);
        let r = reach.iter().find(|r| &r["campaign_id"] == id);
        let released = |v: &Value| {
            if a["released"] == true {
                n(v)
            } else {
                "suppressed".into()
            }
        };
        let lift_text = l.map_or("-".to_string(), |l| {
            let i = &l["relative_lift"];
            if i.is_null() {
                "not released".into()
            } else {
                format!(
                    "{} [{}, {}] ({})",
                    pct(&i["estimate"]),
                    pct(&i["low"]),
                    pct(&i["high"]),
                    pct(&l["truth_linked"]["relative_lift"])
                )
            }
        });
        t.add_row([
            id.as_str().unwrap_or("?").to_string(),
            format!(
                "{} ({})",
                released(&a["conversions"]),
                n(&a["truth_linked"]["conversions"])
            ),
            a["roas"].as_f64().map_or("-".into(), |x| format!("{x:.2}")),
            lift_text,
            r.map_or("-".to_string(), |r| {
                format!(
                    "{} ({})",
                    n(&r["deduplicated"]),
                    n(&r["truth_linked"]["deduplicated"])
                )
            }),
        ]);
    }
    println!("{t}");
}

/// The measurement step: the brand's analyst asks the host for attribution (by
/// placement and by day), lift and reach of each of the brand's campaigns, one campaign
/// at a time (so that the DP bound of one group per person does not cut a campaign's
/// people). Each campaign's figures sit next to truth.json's for the linked people.
/// Returns the report's `attribution`, `lift` and `reach`.
async fn measurement(
    brand: &NodeDir,
    collab: &str,
    truth: &Value,
) -> anyhow::Result<(Value, Value, Value)> {
    use jingteng_measure::{CampaignId, Dimension, Measure, Report};
    let focal = truth["world"]["focal_brand"]
        .as_str()
        .context("truth.json names no focal brand")?;
    let campaigns: Vec<&String> = truth["campaigns"]
        .as_object()
        .context("truth.json has no campaigns")?
        .iter()
        .filter(|(_, c)| c["brand"] == focal)
        .map(|(id, _)| id)
        .collect();
    let ask = |measure: Measure| async move {
        let req = jingteng_node::MeasureRequest {
            measure,
            analyst: MEASURE_ANALYST.into(),
        };
        jingteng_node::measure_host(brand, collab, &req).await
    };
    let (mut attribution, mut lift, mut reach) = (Vec::new(), Vec::new(), Vec::new());
    let (mut coverage, mut reach_parties, mut budget) = (Value::Null, Value::Null, Value::Null);
    for id in campaigns {
        let campaign = Some(CampaignId::parse(id)?);
        let linked = &truth["campaigns"][id.as_str()]["linked"];
        let Report::Attribution(a) = ask(Measure::Attribution {
            settings: Default::default(),
            campaign: campaign.clone(),
            by: vec![Dimension::Placement, Dimension::Day],
        })
        .await?
        else {
            anyhow::bail!("the host answered attribution with another report");
        };
        coverage = serde_json::to_value(&a.coverage)?;
        let mut c = serde_json::to_value(a.campaigns.first())?;
        for b in &a.breakdowns {
            c[format!("by_{}", b.dimension.column())] = serde_json::to_value(&b.rows)?;
        }
        c["truth_linked"] = json!({
            "conversions": linked["attributed_conversions"],
            "gmv_fen": linked["attributed_gmv_fen"],
        });
        attribution.push(c);

        let Report::Lift(l) = ask(Measure::Lift {
            settings: Default::default(),
            campaign: campaign.clone(),
        })
        .await?
        else {
            anyhow::bail!("the host answered lift with another report");
        };
        let mut c = serde_json::to_value(l.campaigns.first())?;
        let truth_lift = linked["true_relative_lift"].as_f64();
        c["truth_linked"] = json!({
            "relative_lift": truth_lift,
            "test_rate": linked["test_rate"],
            "control_rate": linked["control_rate"],
        });
        c["interval_covers_truth"] = json!(
            l.campaigns
                .first()
                .and_then(|c| c.relative_lift)
                .zip(truth_lift)
                .map(|(i, t)| i.low <= t && t <= i.high)
        );
        lift.push(c);

        let Report::Reach(r) = ask(Measure::Reach { campaign }).await? else {
            anyhow::bail!("the host answered reach with another report");
        };
        budget = last_budget(&r.released);
        reach_parties = json!(r.parties);
        let mut c = serde_json::to_value(r.campaigns.first())?;
        c["truth_linked"] = truth["reach"][id.as_str()]["matched"].clone();
        reach.push(c);
    }
    let analyst = format!("{}:{MEASURE_ANALYST}", brand.config().party);
    Ok((
        json!({ "analyst": analyst, "brand": focal, "coverage": coverage, "campaigns": attribution }),
        json!({ "analyst": analyst, "brand": focal, "campaigns": lift }),
        json!({ "analyst": analyst, "brand": focal, "parties": reach_parties, "campaigns": reach, "budget": budget }),
    ))
}

/// The analyst's budget after the last query of a report, if released with DP.
fn last_budget(released: &[jingteng_measure::Released]) -> Value {
    released
        .iter()
        .rev()
        .find_map(|r| r.budget.as_ref())
        .map_or(Value::Null, |b| json!(b))
}

/// The audience step: the brand's node defines an audience at the host (people who
/// bought hair care at the retailer and are not yet brand customers, for social), the
/// host evaluates it on its joined view and releases only its size (charged to
/// `brand:analyst`), then delivers it: social receives the rows of its own identity
/// table and writes its own user ids. The count social holds is social's own figure;
/// the released size should sit within its noise bound of it.
async fn audience(brand: &NodeDir, social: &NodeDir, collab: &str) -> anyhow::Result<Value> {
    let rules = vec!["retail.orders.category = 'hair_care'".to_string()];
    let definition = jingteng_audience::DefinitionFile {
        name: "hair-care-prospects".into(),
        description: "bought hair care at the retailer, not yet a brand customer".into(),
        activate: "social".into(),
        include: rules.clone(),
        exclude: vec!["brand.crm".into()],
        // The demo's world is small: 100 rather than the default 1,000.
        min_size: Some(100),
        as_of: None,
        refresh: None,
        lookalike: None,
    };
    let created = jingteng_node::audience_create(
        brand,
        collab,
        &jingteng_node::CreateAudience {
            definition,
            analyst: "analyst".into(),
        },
    )
    .await?;
    let delivered = jingteng_node::audience_deliver(
        brand,
        collab,
        &created.name,
        &jingteng_node::DeliverAudience {
            analyst: "analyst".into(),
        },
    )
    .await?;
    let version = delivered.record.version;
    let held = jingteng_node::delivered_here(social, collab)?;
    let users = held
        .iter()
        .find(|(name, _)| *name == created.name)
        .and_then(|(_, versions)| versions.iter().find(|v| v.version == version))
        .map(|v| v.users)
        .context("social holds no delivered version of the audience")?;
    let bound = created.size.release.noise.first().and_then(|n| n.bound95);
    let within = match (created.size.people, bound) {
        (Some(p), Some(b)) => Some(((p - users as i64).abs() as f64) <= b),
        (Some(p), None) => Some(p == users as i64),
        _ => None,
    };
    let mut rules_text: Vec<String> = rules.iter().map(|r| format!("include {r}")).collect();
    rules_text.push("exclude brand.crm".into());
    Ok(json!({
        "name": created.name,
        "activate": created.activate,
        "defined_by": created.owner,
        "rules": rules_text,
        "size_class": created.size_class,
        "released_people": created.size.people,
        "bound95": bound,
        "release": created.size.release.mode,
        "budget": created.size.budget_remaining.map(|r| json!({"remaining": r})),
        "delivered": {
            "to": delivered.record.to,
            "version": version,
            "file": Path::new("nodes/social").join(&delivered.record.file),
            "users_at_media": users,
        },
        "released_within_bound95": within,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn truth() -> Value {
        json!({"overlap": {
            "social+retail": {"people": 10, "linkable": 8, "by_id_type": {"phone": 6, "email": 0, "device": 3}},
        }})
    }

    #[test]
    fn a_report_equal_to_the_truth_has_no_differences() {
        // A type no channel carried (email here) may be absent from the report.
        let report = json!({"overlap": {"social+retail": {"matched": 8, "by_id_type": {"phone": 6, "device": 3}}}});
        assert!(off_truth(&report, &truth()).is_empty());
    }

    #[test]
    fn every_figure_off_the_truth_is_named() {
        let report = json!({"overlap": {"social+retail": {"matched": 7, "by_id_type": {"phone": 6, "email": 1}}}});
        assert_eq!(
            off_truth(&report, &truth()),
            [
                "social+retail: matched 7 vs linkable 8",
                "social+retail via device: matched 0 vs linkable 3",
                "social+retail via email: matched 1 vs linkable 0",
            ]
        );
        // A set of parties missing from the report is off too.
        assert_eq!(off_truth(&json!({}), &truth()).len(), 3);
    }

    #[test]
    fn networked_and_local_differ_only_beyond_timings() {
        let local =
            json!({"collaboration": "c", "overlap": {"a+b": {"matched": 1}}, "seconds": 1.0});
        let mut networked = local.clone();
        networked["seconds"] = json!(2.0);
        assert!(differences(&networked, &local).is_empty());
        networked["overlap"]["a+b"]["matched"] = json!(2);
        assert_eq!(differences(&networked, &local), ["overlap"]);
    }

    #[test]
    fn force_removes_only_what_a_demo_makes() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("d");
        for d in ["world", "nodes", ".world.partial"] {
            std::fs::create_dir_all(out.join(d)).unwrap();
        }
        std::fs::write(out.join("report.json"), "{}").unwrap();
        assert!(prepare(&out, false).is_err());
        prepare(&out, true).unwrap();
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

        std::fs::write(out.join("keep.txt"), "x").unwrap();
        std::fs::create_dir_all(out.join("world")).unwrap();
        let err = prepare(&out, true).unwrap_err().to_string();
        assert!(err.contains("keep.txt"), "{err}");
        assert!(out.join("world").exists());
    }
}

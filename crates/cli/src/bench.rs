//! `jingteng bench …`.

use crate::{BenchPsiArgs, BenchQueryArgs};

pub(crate) fn psi(args: BenchPsiArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && !args.json {
        eprintln!("note: this is a debug build; build with --release for meaningful figures");
    }
    let r = jingteng_match::bench::psi(args.records, args.keys)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "PSI, 2 parties × {} records, {} key(s) each, {} threads",
        r.records, r.keys, r.threads
    );
    println!(
        "  bare curve ceiling   {:>12.0} records/s/core",
        r.ceiling_per_core
    );
    println!(
        "  full match           {:>12.0} records/s/core",
        r.psi_per_core
    );
    println!(
        "  ratio                {:>12.3} (curve work alone would give {:.3}; efficiency {:.0}%)",
        r.ratio,
        r.ideal_ratio,
        100.0 * r.efficiency
    );
    println!(
        "  wall {:.1} s, CPU {:.1} s, matched {}",
        r.wall_seconds, r.cpu_seconds, r.matched
    );
    if let Some(b) = r.peak_bytes_per_record {
        println!("  peak memory          {b:>12.0} bytes/record");
    }
    Ok(())
}

/// The world a benchmark runs on: `--spec`, or a world of `--scale` generated (seed 7)
/// into `out`; returns its spec.
pub(crate) fn world_spec(
    spec: Option<&std::path::PathBuf>,
    scale: Option<jingteng_synth::Scale>,
    out: &std::path::Path,
) -> anyhow::Result<std::path::PathBuf> {
    match (spec, scale) {
        (Some(spec), _) => Ok(spec.clone()),
        (None, Some(scale)) => {
            let config = jingteng_synth::Config {
                seed: 7,
                scale,
                force: true,
                media: 1,
            };
            eprintln!(
                "generating a world of {} people in {}",
                scale.people(),
                out.display()
            );
            jingteng_synth::generate(&config, out, &|_, _| {})?;
            Ok(out.join("collab.toml"))
        }
        (None, None) => anyhow::bail!("give --spec FILE or --scale S"),
    }
}

pub(crate) fn query(args: BenchQueryArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && !args.json {
        eprintln!("note: this is a debug build; build with --release for meaningful figures");
    }
    let spec = world_spec(args.spec.as_ref(), args.scale, &args.out)?;
    let state = spec
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(".jingteng-bench");
    let runtime = tokio::runtime::Runtime::new()?;
    let results = runtime.block_on(async {
        eprintln!("building the joined view (match and join)…");
        let started = std::time::Instant::now();
        let info = jingteng_engine::view::build_local(
            &spec,
            &state,
            std::sync::Arc::new(|_: &str, _: u64| {}),
        )
        .await?;
        eprintln!("  {:.1} s", started.elapsed().as_secs_f64());
        let collab = jingteng_match::read_spec(&spec)?;
        let mut out = Vec::new();
        for mode in [
            jingteng_engine::ReleaseMode::Threshold,
            jingteng_engine::ReleaseMode::Dp,
        ] {
            eprintln!("timing queries in {mode:?} mode…");
            out.push(jingteng_engine::bench::run(&collab, &state, &info, mode, args.reps).await?);
        }
        anyhow::Ok(out)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    for r in &results {
        println!(
            "{} mode, {} exposure rows, {} order rows",
            r.mode, r.exposure_rows, r.order_rows
        );
        println!(
            "  policy check {:.0} µs; parse + plan + check {:.0} µs",
            r.check_micros, r.plan_and_check_micros
        );
        for q in &r.queries {
            println!(
                "  {:<40} engine {:>7.3} s  plain DataFusion {:>7.3} s  ratio {:.2}",
                q.name, q.engine_seconds, q.plain_seconds, q.ratio
            );
        }
        println!("  all queries: ratio {:.2}", r.total_ratio);
    }
    Ok(())
}

pub(crate) fn rta(args: crate::BenchRtaArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && !args.json {
        eprintln!("note: this is a debug build; build with --release for meaningful figures");
    }
    let config = jingteng_audience::rta::bench::Config {
        users: args.users,
        campaigns: args.campaigns,
        lookups: args.lookups,
        wrk_seconds: args.wrk_seconds,
        wrk_connections: args.connections,
        wrk_threads: args.wrk_threads,
        server_threads: args.server_threads,
        pin: args.pin,
    };
    let r = jingteng_audience::rta::bench::run(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{r}");
    }
    Ok(())
}

pub(crate) fn network(args: crate::BenchNetworkArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use jingteng_node::{NodeDir, contract};
    if cfg!(debug_assertions) && !args.json {
        eprintln!("note: this is a debug build; build with --release for meaningful figures");
    }
    let tmp = tempfile::tempdir().context("a temporary folder for the benchmark")?;
    let spec = jingteng_match::bench::write_parties(tmp.path(), args.records, args.keys)?;
    // Two nodes, a (the host) and b, each on a free loopback port, under one contract,
    // each with its table imported.
    let mut nodes = Vec::new();
    for party in ["a", "b"] {
        let dir = tmp.path().join("nodes").join(party);
        jingteng_node::init(&dir, party)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let mut node = NodeDir::open(&dir)?;
        node.set_listen(&listener.local_addr()?.to_string())?;
        jingteng_node::import(&node, &spec, "users", None)
            .with_context(|| format!("importing {party}'s table"))?;
        nodes.push((node, listener));
    }
    let mut c = contract::propose(&nodes[0].0, &spec, vec![contract::card(&nodes[1].0)?])?;
    let status = contract::sign(&nodes[1].0, &mut c)?;
    for (n, _) in &nodes {
        contract::record(n, &c, &status, "activate")?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let host = NodeDir::open(nodes[0].0.dir())?;
    let mut servers = Vec::new();
    for (node, listener) in nodes {
        let mut stopped = stopped.clone();
        listener.set_nonblocking(true)?;
        servers.push(runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            jingteng_node::serve(&node, listener, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await?;
            anyhow::Ok(())
        }));
    }
    let (sent0, received0) = jingteng_node::wire_bytes();
    let started = std::time::Instant::now();
    let report = runtime.block_on(crate::matching::start_and_follow(
        &host,
        "bench",
        3600,
        "the benchmark's nodes run in this process",
    ));
    let networked_seconds = started.elapsed().as_secs_f64();
    let (sent1, received1) = jingteng_node::wire_bytes();
    let _ = stop.send(true);
    runtime.block_on(async {
        for s in servers {
            let _ = s.await;
        }
    });
    let report = report?;
    let started = std::time::Instant::now();
    let local = jingteng_match::run(&spec, &|_: &str, _: u64| {})?;
    let local_seconds = started.elapsed().as_secs_f64();
    let matched = report["overlap"]["a+b"]["matched"].as_u64().unwrap_or(0);
    let expected = args.records - args.records / 2;
    let local_matched = local.overlap.get("a+b").map_or(0, |o| o.matched);
    if matched != expected || local_matched != expected {
        anyhow::bail!(
            "the benchmark matched {matched} people over the network and {local_matched} locally; expected {expected}"
        );
    }
    let wire_bytes = (sent1 - sent0) + (received1 - received0);
    let per_key = wire_bytes as f64 / (2.0 * args.records as f64 * f64::from(args.keys));
    let ratio = networked_seconds / local_seconds.max(1e-9);
    if args.json {
        let r = serde_json::json!({
            "records": args.records,
            "keys": args.keys,
            "matched": matched,
            "wire_bytes": wire_bytes,
            "bytes_per_record_per_key": per_key,
            "networked_seconds": networked_seconds,
            "local_seconds": local_seconds,
            "ratio": ratio,
        });
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "Networked match, 2 nodes on loopback × {} records, {} key(s) each: {matched} matched",
        args.records, args.keys
    );
    println!(
        "  on the wire          {wire_bytes:>12} bytes, {per_key:.1} bytes per record per identifier type"
    );
    println!(
        "  networked            {networked_seconds:>12.1} s\n  local mode           {local_seconds:>12.1} s\n  ratio                {ratio:>12.2}"
    );
    Ok(())
}

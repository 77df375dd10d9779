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

pub(crate) fn query(args: BenchQueryArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && !args.json {
        eprintln!("note: this is a debug build; build with --release for meaningful figures");
    }
    let spec = match (&args.spec, args.scale) {
        (Some(spec), _) => spec.clone(),
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
                args.out.display()
            );
            jingteng_synth::generate(&config, &args.out, &|_, _| {})?;
            args.out.join("collab.toml")
        }
        (None, None) => anyhow::bail!("give --spec FILE or --scale S"),
    };
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
    };
    let r = jingteng_audience::rta::bench::run(&config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{r}");
    }
    Ok(())
}

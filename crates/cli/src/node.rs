//! `jingteng init` and `jingteng audit …`.

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jingteng_node::NodeDir;

use jingteng_node::contract::{self, Contract, ContractStatus, MemberCard};

use crate::{AuditArgs, ContractArgs, ImportArgs, InitArgs, NodeArg, ProposeArgs, ServeArgs};

pub(crate) fn init(args: InitArgs) -> anyhow::Result<()> {
    let made = jingteng_node::init(&args.dir, &args.party)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&made)?);
        return Ok(());
    }
    println!(
        "Initialised node {:?} in {}",
        made.config.party,
        made.dir.display()
    );
    println!("  signing key (public)  {}", made.config.public_key);
    println!(
        "  TLS certificate       {} (SHA-256 {})",
        made.config.tls_cert, made.cert_sha256
    );
    println!(
        "  listens on            {} (edit node.toml to change)",
        made.config.listen
    );
    println!(
        "  secrets               {}/secrets/ (mode 0700, never share)",
        made.dir.display()
    );
    println!(
        "  web dashboard         off (set dashboard = \"127.0.0.1:7480\" in node.toml; tokens in secrets/dashboard-*.token)"
    );
    Ok(())
}

pub(crate) fn import(args: ImportArgs) -> anyhow::Result<()> {
    let node = NodeDir::open(&args.dir)?;
    let made = jingteng_node::import(&node, &args.spec, &args.table, args.file.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&made)?);
        return Ok(());
    }
    println!(
        "Imported {} version {}: {} rows into {}",
        made.dataset, made.version, made.rows, made.path
    );
    let cols: Vec<String> = made
        .columns
        .iter()
        .map(|(c, t)| format!("{c} ({t})"))
        .collect();
    println!("  columns: {}", cols.join(", "));
    Ok(())
}

pub(crate) fn audit_verify(args: AuditArgs) -> anyhow::Result<()> {
    let catalog = NodeDir::open(&args.dir)?.catalog()?;
    let n = catalog.verify_audit()?;
    if args.json {
        println!("{}", serde_json::json!({"ok": true, "entries": n}));
    } else {
        println!("Audit log intact: {n} entries, hash chain verified.");
    }
    Ok(())
}

pub(crate) fn jobs(args: AuditArgs) -> anyhow::Result<()> {
    let jobs = NodeDir::open(&args.dir)?.catalog()?.jobs()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "#",
        "kind",
        "collaboration",
        "state",
        "attempts",
        "progress",
        "error",
    ]);
    for j in jobs {
        t.add_row([
            j.id.to_string(),
            j.kind,
            j.collaboration.unwrap_or_default(),
            j.state,
            j.attempts.to_string(),
            j.progress,
            j.error.unwrap_or_default(),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub(crate) fn audit_log(args: AuditArgs) -> anyhow::Result<()> {
    let entries = NodeDir::open(&args.dir)?.catalog()?.audit_entries()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["#", "time (ms)", "actor", "action", "subject", "details"]);
    for e in entries {
        t.add_row([
            e.seq.to_string(),
            e.ts_ms.to_string(),
            e.actor,
            e.action,
            e.subject,
            e.details,
        ]);
    }
    println!("{t}");
    Ok(())
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let node = NodeDir::open(&args.dir)?;
    // Background work (the scheduled refresh of audiences) logs to stderr.
    crate::log::init();
    let runtime = tokio::runtime::Runtime::new()?;
    // Checked before anything listens: a dashboard address that is not loopback is
    // refused, naming node.toml.
    let dashboard = jingteng_node::dashboard_addr(&node)?;
    runtime.block_on(async {
        let addr = node.config().listen.clone();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr} (node.toml `listen`)"))?;
        eprintln!(
            "node {:?} serving API {} on https://{addr} (mutual TLS; Ctrl-C to stop)",
            node.config().party,
            jingteng_node::API_VERSION
        );
        if let Some(dashboard) = dashboard {
            // Made now if missing; printed by path only (a token is never logged).
            jingteng_node::dashboard_tokens(&node)?;
            let dir = node.dir().display();
            eprintln!(
                "dashboard on http://{dashboard}/ (plain HTTP, loopback only): open http://{dashboard}/?token=TOKEN with the token in {dir}/{} (or {dir}/{} for read-only access)",
                jingteng_node::OPERATOR_TOKEN_FILE,
                jingteng_node::ANALYST_TOKEN_FILE,
            );
        }
        let mut options = jingteng_node::ServeOptions::default();
        let mut rta_server = None;
        if let Some(rta_addr) = &args.rta_listen {
            let live = jingteng_node::rta_live_index(&node)?;
            let rta_listener = tokio::net::TcpListener::bind(rta_addr)
                .await
                .with_context(|| format!("listening on {rta_addr} (--rta-listen)"))?;
            let stats = live.load().index().stats();
            eprintln!(
                "RTA on http://{rta_addr}/v1/rta (plain HTTP/1.1): {} campaigns, {} device tokens",
                stats.campaigns, stats.users
            );
            rta_server = Some(tokio::spawn(jingteng_audience::rta::serve(
                rta_listener,
                live.clone(),
                shutdown_signal(),
            )));
            options.rta = Some(live);
        }
        jingteng_node::serve_with(&node, listener, shutdown_signal(), options).await?;
        if let Some(s) = rta_server {
            s.abort();
        }
        eprintln!("stopped");
        Ok(())
    })
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

pub(crate) fn collab_card(args: NodeArg) -> anyhow::Result<()> {
    let card = contract::card(&NodeDir::open(&args.dir)?)?;
    println!("{}", serde_json::to_string_pretty(&card)?);
    Ok(())
}

pub(crate) fn collab_propose(args: ProposeArgs) -> anyhow::Result<()> {
    let node = NodeDir::open(&args.dir)?;
    let cards = args
        .cards
        .iter()
        .map(|p| -> anyhow::Result<MemberCard> {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not a member card", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let c = contract::propose(&node, &args.spec, cards)?;
    c.write(&args.out)?;
    let status = c.status()?;
    println!(
        "Proposed {} (contract {}), written to {}.",
        status.collaboration,
        &status.contract_sha256[..16],
        args.out.display()
    );
    println!(
        "Waiting for: {}. Each runs `jingteng collab sign --dir DIR --contract FILE`.",
        status.pending.join(", ")
    );
    Ok(())
}

pub(crate) fn collab_sign(args: ContractArgs) -> anyhow::Result<()> {
    let dir = args.dir.context("--dir: the node that signs")?;
    let node = NodeDir::open(&dir)?;
    let mut c = Contract::read(&args.contract)?;
    let status = contract::sign(&node, &mut c)?;
    c.write(&args.contract)?;
    print_status(&status, args.json)
}

pub(crate) fn collab_status(args: ContractArgs) -> anyhow::Result<()> {
    let c = Contract::read(&args.contract)?;
    let status = c.status()?;
    if let Some(dir) = &args.dir {
        contract::record(
            &NodeDir::open(dir)?,
            &c,
            &status,
            if status.active { "activate" } else { "record" },
        )?;
    }
    print_status(&status, args.json)
}

fn print_status(s: &ContractStatus, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    println!(
        "Collaboration {} (contract {})",
        s.collaboration,
        &s.contract_sha256[..16]
    );
    println!(
        "  signed:  {}",
        if s.signed.is_empty() {
            "-".into()
        } else {
            s.signed.join(", ")
        }
    );
    println!(
        "  pending: {}",
        if s.pending.is_empty() {
            "-".into()
        } else {
            s.pending.join(", ")
        }
    );
    println!(
        "  {}",
        if s.active {
            "ACTIVE: every member has signed"
        } else {
            "not active: nothing runs until every member signs"
        }
    );
    Ok(())
}

pub(crate) fn rta_token(args: crate::RtaTokenArgs) -> anyhow::Result<()> {
    use jingteng_audience::rta::DeviceMd5;
    let node = NodeDir::open(&args.dir)?;
    let md5 = match (&args.device_md5, &args.device, &args.device_type) {
        (Some(hex), _, _) => DeviceMd5::parse_hex(hex.trim())
            .map_err(|e| anyhow::anyhow!("--device-md5 is not 32 hex digits ({e:?})"))?,
        (None, Some(raw), Some(kind)) => {
            let kind = jingteng_psi::DeviceType::parse(kind).ok_or_else(|| {
                anyhow::anyhow!("--device-type {kind:?} is not one of imei, oaid, idfa, caid, mac")
            })?;
            DeviceMd5::of_device(kind, raw)
                .map_err(|e| anyhow::anyhow!("--device is not a valid device id ({e:?})"))?
        }
        _ => anyhow::bail!("give --device-md5 HEX, or --device RAW with --device-type TYPE"),
    };
    let token = jingteng_node::rta_token(&node, md5)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"device_md5": md5.to_hex(), "token": token.to_hex()})
        );
    } else {
        println!("{}", token.to_hex());
    }
    Ok(())
}

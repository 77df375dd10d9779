//! `jingteng init` and `jingteng audit …`.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jingteng_node::NodeDir;

use crate::{AuditArgs, ImportArgs, InitArgs};

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

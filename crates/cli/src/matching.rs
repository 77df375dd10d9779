//! `jingteng match`.

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jingteng_match::MatchReport;

use crate::{MatchArgs, progress_bar};

pub(crate) fn run(args: MatchArgs) -> anyhow::Result<()> {
    let report = match (&args.spec, &args.collab, &args.dir) {
        (Some(spec), _, _) => local(spec)?,
        (None, Some(collab), Some(dir)) => networked(collab, dir, args.timeout)?,
        _ => anyhow::bail!("give --spec FILE (local mode) or --collab ID --dir DIR (networked)"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let r: MatchReport = report_from(&report)?;
        print_report(&r);
    }
    Ok(())
}

pub(crate) fn local(spec: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let bar = progress_bar(0, "rows");
    bar.set_message("matching");
    let report = jingteng_match::run(spec, &|party: &str, rows: u64| {
        bar.set_message(format!("matching {party}"));
        bar.inc_length(rows);
        bar.inc(rows);
    })?;
    bar.finish_and_clear();
    Ok(serde_json::to_value(&report)?)
}

/// Starts the match at the host node (as its operator) and follows it to the report.
fn networked(
    collab: &str,
    dir: &std::path::Path,
    timeout: u64,
) -> anyhow::Result<serde_json::Value> {
    let node = jingteng_node::NodeDir::open(dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let hint = format!("is `jingteng serve --dir {}` running?", dir.display());
    runtime.block_on(start_and_follow(&node, collab, timeout, &hint))
}

/// Asks the serving host `node`, as its operator, to start a networked match of
/// `collab`, and follows the run (with a spinner) to its report. `hint` is added when
/// the node cannot be reached.
pub(crate) async fn start_and_follow(
    node: &jingteng_node::NodeDir,
    collab: &str,
    timeout: u64,
    hint: &str,
) -> anyhow::Result<serde_json::Value> {
    let me = jingteng_node::contract::card(node)?;
    let start = format!("/v1/collaborations/{collab}/match");
    let (status, body) = jingteng_node::post_to_peer(
        node,
        &me.endpoint,
        &me.cert_sha256,
        &start,
        "application/json",
        vec![],
    )
    .await
    .with_context(|| format!("reaching this node at {} ({hint})", me.endpoint))?;
    if status != 202 {
        anyhow::bail!(
            "the node refused to start the match ({status}): {}",
            String::from_utf8_lossy(&body)
        );
    }
    let run = serde_json::from_slice::<serde_json::Value>(&body)?["run"]
        .as_str()
        .context("no run id in the answer")?
        .to_string();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!("match {run}: waiting for the members"));
    let path = format!("{start}/{run}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    loop {
        bar.tick();
        // A host that stops (a crash, a restart) takes the run up again when it starts:
        // keep following until it answers, or until the deadline.
        let (status, body) = match jingteng_node::get_from_peer(
            node,
            &me.endpoint,
            &me.cert_sha256,
            &path,
        )
        .await
        {
            Ok(answer) => answer,
            Err(e) => {
                if std::time::Instant::now() > deadline {
                    bar.finish_and_clear();
                    anyhow::bail!(
                        "match {run}: the host at {} stopped answering ({e}) and did not come back within {timeout} s ({hint})",
                        me.endpoint
                    );
                }
                bar.set_message(format!(
                    "match {run}: the host does not answer ({e}); waiting for it to come back"
                ));
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        if status != 200 {
            anyhow::bail!(
                "following match {run} ({status}): {}",
                String::from_utf8_lossy(&body)
            );
        }
        let s: jingteng_node::RunStatus = serde_json::from_slice(&body)?;
        if let Some(e) = s.error {
            bar.finish_and_clear();
            anyhow::bail!("match {run} failed: {e}");
        }
        if let Some(report) = s.report {
            bar.finish_and_clear();
            return Ok(report);
        }
        let received = if s.received.is_empty() {
            "nobody yet".to_string()
        } else {
            s.received.join(", ")
        };
        if std::time::Instant::now() > deadline {
            bar.finish_and_clear();
            anyhow::bail!("match {run}: no result within {timeout} s; received from: {received}");
        }
        bar.set_message(format!("match {run}: received from {received}"));
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

fn report_from(v: &serde_json::Value) -> anyhow::Result<MatchReport> {
    Ok(serde_json::from_value(v.clone())?)
}

fn print_report(r: &MatchReport) {
    println!(
        "Collaboration {}: {} parties matched in {:.1} s",
        r.collaboration,
        r.parties.len(),
        r.seconds
    );
    let mut ids = Table::new();
    ids.load_preset(UTF8_FULL_CONDENSED);
    ids.set_header([
        "party",
        "column",
        "type",
        "form",
        "rows",
        "missing",
        "valid",
        "rejected",
        "ambiguous",
    ]);
    for party in &r.parties {
        for (column, c) in r.identifiers.get(party).into_iter().flatten() {
            let rejected = if c.rejected.is_empty() {
                "0".to_string()
            } else {
                c.rejected
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            ids.add_row([
                party.clone(),
                column.clone(),
                c.id_type.to_string(),
                c.form.to_string(),
                c.rows.to_string(),
                c.missing.to_string(),
                c.valid.to_string(),
                rejected,
                c.ambiguous.to_string(),
            ]);
        }
    }
    println!("{ids}");

    let families: Vec<String> = r
        .overlap
        .values()
        .next()
        .map(|o| o.by_id_type.keys().cloned().collect())
        .unwrap_or_default();
    let mut overlap = Table::new();
    overlap.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["parties".to_string(), "matched".to_string()];
    header.extend(families.iter().map(|f| format!("via {f} alone")));
    overlap.set_header(header);
    for (key, o) in &r.overlap {
        let mut row = vec![key.clone(), o.matched.to_string()];
        row.extend(
            families
                .iter()
                .map(|f| o.by_id_type.get(f).copied().unwrap_or(0).to_string()),
        );
        overlap.add_row(row);
    }
    println!("{overlap}");
    let conflicts: u64 = r.conflicts.values().sum();
    println!(
        "Channels: {}. Conflicting links refused: {conflicts}.",
        r.channels
            .iter()
            .map(|(name, parties)| format!("{name} ({})", parties.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

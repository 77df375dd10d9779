//! `jingteng match`.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jingteng_match::MatchReport;

use crate::{MatchArgs, progress_bar};

pub(crate) fn run(args: MatchArgs) -> anyhow::Result<()> {
    let bar = progress_bar(0, "rows");
    bar.set_message("matching");
    let report = jingteng_match::run(&args.spec, &|party: &str, rows: u64| {
        bar.set_message(format!("matching {party}"));
        bar.inc_length(rows);
        bar.inc(rows);
    })?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
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

    let families: Vec<&str> = r
        .overlap
        .values()
        .next()
        .map(|o| o.by_id_type.keys().copied().collect())
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

//! `jingteng synth`.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jingteng_synth::{Config, generate};

use jingteng_match::bench::peak_rss_bytes;

use crate::{SynthArgs, parse_scale, progress_bar};

pub(crate) fn run(args: SynthArgs) -> anyhow::Result<()> {
    let scale = parse_scale(&args.scale)?;
    let config = Config {
        seed: args.seed,
        scale,
        force: args.force,
        media: args.media,
    };
    let bar = progress_bar(scale.people(), "people");
    bar.set_message(format!("generating {}", args.out.display()));
    let summary = generate(&config, &args.out, &|done, _total| bar.set_position(done))?;
    bar.finish_and_clear();

    let rows: u64 = summary.tables.iter().map(|t| t.1).sum();
    let secs = summary.elapsed.as_secs_f64();
    if args.json {
        let out = serde_json::json!({
            "dir": summary.dir,
            "seed": args.seed,
            "people": summary.people.iter().map(|(k, v)| (k.to_string(), serde_json::json!(*v))).collect::<serde_json::Map<_, _>>(),
            "tables": summary.tables.iter().map(|(k, v)| (k.to_string(), serde_json::json!(*v))).collect::<serde_json::Map<_, _>>(),
            "seconds": secs,
            "rows_per_second": rows as f64 / secs.max(1e-9),
            "peak_rss_bytes": peak_rss_bytes(),
            "truth": summary.truth,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }

    println!(
        "Wrote a world of {} people (seed {}) to {}",
        summary.people[0].1,
        args.seed,
        summary.dir.display()
    );
    let mut people = Table::new();
    people.load_preset(UTF8_FULL_CONDENSED);
    people.set_header(["party", "people"]);
    for (party, n) in summary.people.iter().skip(1) {
        people.add_row([party.to_string(), n.to_string()]);
    }
    println!("{people}");

    let mut tables = Table::new();
    tables.load_preset(UTF8_FULL_CONDENSED);
    tables.set_header(["table", "rows", "files"]);
    for (name, n) in &summary.tables {
        tables.add_row([
            name.to_string(),
            n.to_string(),
            format!("{name}.csv, {name}.parquet"),
        ]);
    }
    println!("{tables}");

    let mut overlap = Table::new();
    overlap.load_preset(UTF8_FULL_CONDENSED);
    overlap.set_header([
        "parties",
        "people shared",
        "linkable",
        "via phone",
        "via email",
        "via device",
    ]);
    if let Some(map) = summary.truth["overlap"].as_object() {
        for (key, o) in map {
            let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0).to_string();
            overlap.add_row([
                key.clone(),
                n(&o["people"]),
                n(&o["linkable"]),
                n(&o["by_id_type"]["phone"]),
                n(&o["by_id_type"]["email"]),
                n(&o["by_id_type"]["device"]),
            ]);
        }
    }
    println!("{overlap}");

    let campaigns = summary.truth["campaigns"]
        .as_object()
        .map_or(0, |m| m.len());
    let peak = peak_rss_bytes().map_or_else(String::new, |b| {
        format!(", peak memory {:.0} MiB", b as f64 / (1024.0 * 1024.0))
    });
    println!(
        "{campaigns} campaigns; ground truth in {}/truth.json. {rows} rows in {secs:.1} s ({:.0} rows/s{peak}).",
        summary.dir.display(),
        rows as f64 / secs.max(1e-9),
    );
    Ok(())
}

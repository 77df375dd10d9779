//! `jingteng bench …`.

use crate::BenchPsiArgs;

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

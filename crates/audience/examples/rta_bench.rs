//! The RTA benchmark without the rest of Jingteng (so it builds in release in a minute):
//! `cargo run --release -p jingteng-audience --example rta_bench -- [USERS] [WRK_SECONDS]
//! [CONNECTIONS] [WRK_THREADS] [SERVER_THREADS] [--pin] [--json]`. Same figures as
//! `jingteng bench rta`.

use jingteng_audience::rta::bench::{Config, run};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let pin = args.iter().any(|a| a == "--pin");
    args.retain(|a| a != "--json" && a != "--pin");
    let mut config = Config {
        pin,
        ..Config::default()
    };
    let num = |i: usize| args.get(i).map(|a| a.parse::<u64>()).transpose();
    if let Some(n) = num(0)? {
        config.users = n;
    }
    if let Some(n) = num(1)? {
        config.wrk_seconds = u32::try_from(n)?;
    }
    if let Some(n) = num(2)? {
        config.wrk_connections = u32::try_from(n)?;
    }
    if let Some(n) = num(3)? {
        config.wrk_threads = u32::try_from(n)?;
    }
    if let Some(n) = num(4)? {
        config.server_threads = usize::try_from(n)?;
    }
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; use --release for meaningful figures");
    }
    let r = run(&config)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{r}");
    }
    Ok(())
}

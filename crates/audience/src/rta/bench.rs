//! `jingteng bench rta` (and `examples/rta_bench.rs`): a synthetic index of N users,
//! its build time and memory, in-process decisions, and `wrk` over loopback.

use std::fmt;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jingteng_psi::DeviceType;
use rayon::prelude::*;
use serde::Serialize;

use super::{CampaignList, DeviceMd5, Error, IndexStats, LiveIndex, Result, RtaIndex};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// Users in the audiences (each in 1–3 campaigns); 1 in 100 is suppressed.
    pub users: u64,
    /// Campaigns, each with three tiers (multipliers 1.0, 1.5, 2.0).
    pub campaigns: u32,
    /// In-process decisions to time (half listed users, half of them asked about one
    /// of their campaigns; half strangers).
    pub lookups: u64,
    /// Seconds of `wrk`; 0 skips the HTTP part.
    pub wrk_seconds: u32,
    /// `wrk` connections (kept alive).
    pub wrk_connections: u32,
    /// `wrk` threads.
    pub wrk_threads: u32,
    /// Server worker threads (0: one per core, or one when pinned).
    pub server_threads: usize,
    /// Keep the server and `wrk` on separate cores (the server's threads on the first,
    /// `wrk` on the last), so that neither waits for the other's time slice. Needs two
    /// cores; ignored (with a note) on one.
    pub pin: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            users: 10_000_000,
            campaigns: 16,
            lookups: 2_000_000,
            wrk_seconds: 10,
            wrk_connections: 32,
            wrk_threads: 1,
            server_threads: 0,
            pin: false,
        }
    }
}

/// What `wrk` measured.
#[derive(Debug, Clone, Serialize)]
pub struct WrkFigures {
    /// Requests per second (every request is one decision).
    pub decisions_per_second: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Requests completed.
    pub requests: u64,
    /// Answers that were not 2xx (should be 0).
    pub non_2xx: u64,
    /// Socket errors (connect, read, write, timeout; should be 0).
    pub socket_errors: u64,
    /// Connections.
    pub connections: u32,
    /// `wrk` threads.
    pub threads: u32,
    /// Seconds run.
    pub seconds: u32,
    /// CPU time of the server (all its threads) per decision, microseconds.
    pub server_cpu_us: Option<f64>,
    /// CPU time of `wrk` per request, microseconds.
    pub wrk_cpu_us: Option<f64>,
    /// The 1-minute load average when `wrk` started (other work on the machine
    /// competes for the same cores).
    pub load_average: Option<f64>,
}

/// What `jingteng bench rta` measures.
#[derive(Debug, Clone, Serialize)]
pub struct RtaBench {
    /// Users listed (before suppression).
    pub users_listed: u64,
    /// Users suppressed (1 in 100).
    pub users_suppressed: u64,
    /// The index's sizes.
    pub index: IndexStats,
    /// Seconds to make the synthetic lists (hashing the device ids).
    pub generate_seconds: f64,
    /// Seconds to build the index from the lists.
    pub build_seconds: f64,
    /// Index heap bytes per user in it.
    pub index_bytes_per_user: f64,
    /// Resident memory the process gained from before the lists were made to after
    /// the index was built and the lists dropped (what serving the index costs).
    pub rss_index_bytes: Option<u64>,
    /// Peak resident memory of the whole process (lists, build and index together).
    pub peak_rss_bytes: Option<u64>,
    /// In-process decisions timed, through the live index as the endpoint does it.
    pub lookups: u64,
    /// Share of timed decisions that were "bid".
    pub bid_rate: f64,
    /// Mean nanoseconds per in-process decision (one thread).
    pub lookup_ns: f64,
    /// In-process decisions per second (one thread).
    pub lookups_per_second: f64,
    /// `wrk` over loopback, if it ran.
    pub wrk: Option<WrkFigures>,
    /// Why `wrk` did not run, if it did not.
    pub wrk_note: Option<String>,
    /// Server worker threads.
    pub server_threads: usize,
    /// The cores the server and `wrk` were pinned to, if they were.
    pub pinned: Option<Pinned>,
}

/// Where the server and `wrk` ran.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Pinned {
    /// The server's core.
    pub server_core: usize,
    /// `wrk`'s core.
    pub wrk_core: usize,
}

/// The first and last cores, when there are two or more to pin to.
fn pin_cores(pin: bool) -> Option<(core_affinity::CoreId, core_affinity::CoreId)> {
    if !pin {
        return None;
    }
    let cores = core_affinity::get_core_ids()?;
    match (cores.first(), cores.last()) {
        (Some(&first), Some(&last)) if cores.len() >= 2 => Some((first, last)),
        _ => None,
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hashed IMEI of synthetic user `i`; `stranger` ids are never listed.
fn device(i: u64, stranger: bool) -> Result<DeviceMd5> {
    let prefix = if stranger { 87 } else { 86 };
    DeviceMd5::of_device(DeviceType::Imei, &format!("{prefix}{i:013}"))
        .map_err(|r| Error::Bench(format!("synthetic IMEI rejected: {}", r.as_str())))
}

/// Campaign ids of the benchmark.
fn campaign_id(c: u64) -> String {
    format!("C{c}")
}

/// The (campaign, tier) memberships of user `i`: 1–3 distinct campaigns.
fn memberships(i: u64, campaigns: u64) -> impl Iterator<Item = (u64, usize)> {
    let r = splitmix(i);
    let k = 1 + r % 3;
    let first = (r >> 8) % campaigns;
    (0..k.min(campaigns)).map(move |j| {
        (
            (first + j * 7) % campaigns,
            ((r >> (32 + 2 * j)) % 3) as usize,
        )
    })
}

/// The synthetic lists and suppression list.
fn lists(users: u64, campaigns: u32) -> Result<(Vec<CampaignList>, Vec<DeviceMd5>)> {
    let campaigns = u64::from(campaigns.max(1));
    let ids: Vec<DeviceMd5> = (0..users)
        .into_par_iter()
        .map(|i| device(i, false))
        .collect::<Result<_>>()?;
    let mut tiers: Vec<[Vec<DeviceMd5>; 3]> = (0..campaigns).map(|_| Default::default()).collect();
    for (i, &id) in ids.iter().enumerate() {
        for (c, t) in memberships(i as u64, campaigns) {
            if let Some(tier) = tiers.get_mut(c as usize).and_then(|c| c.get_mut(t)) {
                tier.push(id);
            }
        }
    }
    let suppressed: Vec<DeviceMd5> = ids.iter().step_by(100).copied().collect();
    drop(ids);
    let lists = tiers
        .into_iter()
        .enumerate()
        .map(|(c, [a, b, d])| {
            CampaignList::new(campaign_id(c as u64))
                .tier(1.0, a)
                .tier(1.5, b)
                .tier(2.0, d)
        })
        .collect();
    Ok((lists, suppressed))
}

/// CPU seconds of this process and of its waited-for children, from `/proc/self/stat`
/// (utime + stime, cutime + cstime; clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let (own, children) = (f.first()? + f.get(1)?, f.get(2)? + f.get(3)?);
    Some((own as f64 / 100.0, children as f64 / 100.0))
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn proc_status_kb(field: &str) -> Option<u64> {
    // The same reader as `jingteng_match::bench`, which this crate does not depend on
    // (it would bring Arrow and Parquet into the RTA server).
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the benchmark.
pub fn run(config: &Config) -> Result<RtaBench> {
    let campaigns = u64::from(config.campaigns.max(1));
    let rss_before = proc_status_kb("VmRSS:");
    let started = Instant::now();
    let (lists, suppressed) = lists(config.users, config.campaigns)?;
    let generate_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let index = RtaIndex::build(lists, &suppressed)?;
    let build_seconds = started.elapsed().as_secs_f64();
    let rss_after = proc_status_kb("VmRSS:");
    let stats = index.stats();
    let users_suppressed = suppressed.len() as u64;
    drop(suppressed);
    let live = Arc::new(LiveIndex::new(index));

    // Queries: half listed users (some suppressed), half strangers; random campaigns.
    let samples = config.lookups.clamp(1, 4_000_000);
    let queries: Vec<(String, DeviceMd5)> = (0..samples)
        .into_par_iter()
        .map(|q| {
            let r = splitmix(q ^ 0x5eed);
            let who = (r >> 2) % config.users.max(1);
            let stranger = r & 1 == 1;
            let id = device(who, stranger)?;
            // A listed user is asked about one of their campaigns half the time.
            let campaign = match memberships(who, campaigns).next() {
                Some((c, _)) if !stranger && r & 2 == 2 => c,
                _ => (r >> 40) % campaigns,
            };
            Ok((campaign_id(campaign), id))
        })
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let mut bids = 0u64;
    for (campaign, id) in &queries {
        let snapshot = live.load();
        let decision = snapshot.decide(black_box(campaign), black_box(*id));
        if decision.is_some_and(|d| d.bid()) {
            bids += 1;
        }
        black_box(decision.map(|d| d.body().len()));
    }
    let lookup_seconds = started.elapsed().as_secs_f64().max(1e-9);

    let cores = pin_cores(config.pin);
    let server_threads = match (config.server_threads, cores) {
        (0, Some(_)) => 1,
        (0, None) => std::thread::available_parallelism().map_or(2, |n| n.get()),
        (n, _) => n,
    };
    let (wrk, wrk_note) = if config.wrk_seconds == 0 {
        (None, Some("not run (--wrk-seconds 0)".to_string()))
    } else {
        match which_wrk() {
            None => (
                None,
                Some("wrk is not installed (Debian/Ubuntu: apt-get install wrk)".to_string()),
            ),
            Some(wrk) => (
                Some(http(
                    config,
                    &wrk,
                    Arc::clone(&live),
                    &queries,
                    server_threads,
                    cores,
                )?),
                None,
            ),
        }
    };
    Ok(RtaBench {
        users_listed: config.users,
        users_suppressed,
        index: stats,
        generate_seconds,
        build_seconds,
        index_bytes_per_user: stats.heap_bytes as f64 / stats.users.max(1) as f64,
        rss_index_bytes: match (rss_before, rss_after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) * 1024),
            _ => None,
        },
        peak_rss_bytes: proc_status_kb("VmHWM:").map(|kb| kb * 1024),
        lookups: samples,
        bid_rate: bids as f64 / samples as f64,
        lookup_ns: lookup_seconds * 1e9 / samples as f64,
        lookups_per_second: samples as f64 / lookup_seconds,
        wrk,
        wrk_note: match (&wrk_note, config.pin && cores.is_none()) {
            (None, true) => Some("not pinned: fewer than two cores to pin to".to_string()),
            _ => wrk_note,
        },
        server_threads,
        pinned: cores.map(|(s, w)| Pinned {
            server_core: s.id,
            wrk_core: w.id,
        }),
    })
}

fn which_wrk() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("wrk"))
        .find(|p| p.is_file())
}

/// The `wrk` script: one pre-formatted request per line of the paths file, taken in
/// turn, each thread from its own starting point.
const WRK_SCRIPT: &str = r#"-- Varied RTA requests for wrk (written by jingteng bench rta).
local requests = {}
local n = 0
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    n = n + 1
    requests[n] = wrk.format("GET", line)
  end
  i = math.random(n)
end
function request()
  i = i + 1
  if i > n then i = 1 end
  return requests[i]
end
"#;

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        context: context.to_string(),
        source,
    }
}

/// Serves the index on loopback and runs `wrk` against it.
fn http(
    config: &Config,
    wrk: &Path,
    live: Arc<LiveIndex>,
    queries: &[(String, DeviceMd5)],
    server_threads: usize,
    cores: Option<(core_affinity::CoreId, core_affinity::CoreId)>,
) -> Result<WrkFigures> {
    let dir = std::env::temp_dir().join(format!("jingteng-rta-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io_err("creating the wrk directory"))?;
    let paths: String = queries
        .iter()
        .take(100_000)
        .map(|(c, id)| format!("/v1/rta?campaign={c}&device_md5={}\n", id.to_hex()))
        .collect();
    let paths_file = dir.join("paths.txt");
    let script_file = dir.join("rta.lua");
    std::fs::write(&paths_file, paths).map_err(io_err("writing the wrk paths"))?;
    std::fs::write(&script_file, WRK_SCRIPT).map_err(io_err("writing the wrk script"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads.max(1))
        .on_thread_start(move || {
            if let Some((server, _)) = cores {
                core_affinity::set_for_current(server);
            }
        })
        .enable_all()
        .build()
        .map_err(io_err("starting the server runtime"))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(io_err("binding loopback"))?;
    let addr = listener
        .local_addr()
        .map_err(io_err("reading the address"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(super::serve(listener, live, async {
        let _ = stopped.await;
    }));

    let load = load_average();
    let cpu_before = cpu_seconds();
    // A child process inherits the affinity of the thread that starts it.
    let output = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Some((_, wrk_core)) = cores {
                    core_affinity::set_for_current(wrk_core);
                }
                Command::new(wrk)
                    .arg(format!("-t{}", config.wrk_threads.max(1)))
                    .arg(format!("-c{}", config.wrk_connections.max(1)))
                    .arg(format!("-d{}s", config.wrk_seconds))
                    .arg("--latency")
                    .arg("-s")
                    .arg(&script_file)
                    .arg(format!("http://{addr}"))
                    .arg("--")
                    .arg(&paths_file)
                    .output()
            })
            .join()
    })
    .map_err(|_| Error::Bench("the thread running wrk panicked".into()))?
    .map_err(io_err("running wrk"));
    let cpu_after = cpu_seconds();
    let _ = stop.send(());
    let served =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    match served {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e),
        Ok(Err(e)) => return Err(Error::Bench(format!("server task failed: {e}"))),
        Err(_) => return Err(Error::Bench("server did not stop within 10 s".into())),
    }
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(Error::Bench(format!(
            "wrk failed ({}): {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let mut figures = parse_wrk(&text)
        .ok_or_else(|| Error::Bench(format!("cannot read wrk's output:\n{text}")))?;
    figures.connections = config.wrk_connections.max(1);
    figures.threads = config.wrk_threads.max(1);
    figures.seconds = config.wrk_seconds;
    figures.load_average = load;
    if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
        let n = figures.requests.max(1) as f64;
        figures.server_cpu_us = Some((a.0 - b.0) * 1e6 / n);
        figures.wrk_cpu_us = Some((a.1 - b.1) * 1e6 / n);
    }
    Ok(figures)
}

/// A `wrk` duration (`812.00us`, `1.20ms`, `2.00s`, `1.00m`) in milliseconds.
fn wrk_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// Reads `wrk --latency` output.
fn parse_wrk(text: &str) -> Option<WrkFigures> {
    let mut f = WrkFigures {
        decisions_per_second: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        requests: 0,
        non_2xx: 0,
        socket_errors: 0,
        connections: 0,
        threads: 0,
        seconds: 0,
        server_cpu_us: None,
        wrk_cpu_us: None,
        load_average: None,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => f.p50_ms = wrk_ms(v)?,
            ["99%", v] => f.p99_ms = wrk_ms(v)?,
            ["Requests/sec:", v] => f.decisions_per_second = v.parse().ok()?,
            [n, "requests", "in", ..] => f.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => f.non_2xx = n.parse().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                f.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    (f.decisions_per_second.is_finite() && f.p99_ms.is_finite()).then_some(f)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

impl fmt::Display for RtaBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.index;
        writeln!(
            f,
            "RTA index: {} users listed, {} suppressed; {} users in the index, {} campaigns, {} memberships",
            self.users_listed, self.users_suppressed, s.users, s.campaigns, s.memberships
        )?;
        writeln!(
            f,
            "  lists made in        {:>10.2} s (hashing device ids)",
            self.generate_seconds
        )?;
        writeln!(f, "  index built in       {:>10.2} s", self.build_seconds)?;
        writeln!(
            f,
            "  index memory         {:>10.1} MB ({:.1} bytes/user)",
            mb(s.heap_bytes),
            self.index_bytes_per_user
        )?;
        if let Some(b) = self.rss_index_bytes {
            writeln!(
                f,
                "  resident, after build{:>10.1} MB above the start",
                mb(b)
            )?;
        }
        if let Some(b) = self.peak_rss_bytes {
            writeln!(
                f,
                "  peak resident        {:>10.1} MB (lists + build + index)",
                mb(b)
            )?;
        }
        writeln!(
            f,
            "  in-process           {:>10.0} decisions/s on one thread ({:.0} ns each, {:.0}% bid)",
            self.lookups_per_second,
            self.lookup_ns,
            100.0 * self.bid_rate
        )?;
        match (&self.wrk, &self.wrk_note) {
            (Some(w), _) => {
                writeln!(
                    f,
                    "  HTTP (wrk, loopback) {:>10.0} decisions/s, p50 {:.3} ms, p99 {:.3} ms",
                    w.decisions_per_second, w.p50_ms, w.p99_ms
                )?;
                writeln!(
                    f,
                    "                       {} requests in {} s, {} connections, {} wrk thread(s), {} server thread(s); non-2xx {}, socket errors {}",
                    w.requests,
                    w.seconds,
                    w.connections,
                    w.threads,
                    self.server_threads,
                    w.non_2xx,
                    w.socket_errors
                )?;
                if let (Some(s), Some(c)) = (w.server_cpu_us, w.wrk_cpu_us) {
                    writeln!(
                        f,
                        "                       CPU per decision: server {s:.1} µs, wrk {c:.1} µs",
                    )?;
                }
                if let Some(p) = self.pinned {
                    writeln!(
                        f,
                        "                       pinned: server on core {}, wrk on core {}",
                        p.server_core, p.wrk_core
                    )?;
                }
                if let Some(l) = w.load_average {
                    writeln!(f, "                       load average at start {l:.2}")?;
                }
            }
            (None, Some(note)) => writeln!(f, "  HTTP: {note}")?,
            (None, None) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 5s test @ http://127.0.0.1:4000
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.31us  120.00us   9.87ms   90.00%
    Req/Sec    70.01k     2.00k   75.00k    80.00%
  Latency Distribution
     50%  400.00us
     75%  450.00us
     90%  520.00us
     99%    1.20ms
  350000 requests in 5.00s, 40.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  70000.12
Transfer/sec:      8.00MB
";
        let f = parse_wrk(text).unwrap();
        assert_eq!(f.requests, 350_000);
        assert!((f.p50_ms - 0.4).abs() < 1e-9);
        assert!((f.p99_ms - 1.2).abs() < 1e-9);
        assert!((f.decisions_per_second - 70000.12).abs() < 1e-6);
        assert_eq!((f.non_2xx, f.socket_errors), (5, 3));
        assert!(parse_wrk("nothing").is_none());
    }

    #[test]
    fn a_small_run_works_without_wrk() {
        let r = run(&Config {
            users: 2_000,
            campaigns: 4,
            lookups: 1_000,
            wrk_seconds: 0,
            ..Config::default()
        })
        .unwrap();
        assert_eq!(r.users_suppressed, 20);
        assert_eq!(r.index.users, 1_980);
        assert!(r.bid_rate > 0.2 && r.bid_rate < 0.5, "{}", r.bid_rate);
        assert!(r.wrk.is_none());
        assert!(r.to_string().contains("decisions/s"));
    }
}

//! `jingteng`: the command line of the Jingteng marketing data clean room.
//!
//! Exit codes: 0 success; 1 an error (printed with its causes); 2 bad command-line
//! usage (printed by the argument parser); 3 a query refused by a privacy rule or a
//! resource limit (the rule is printed); 4 a query refused because the analyst's
//! privacy budget is spent.
//! Audiences: 3 also when a rule is refused, an audience is under its minimum size or a
//! dataset's consent scope forbids delivery.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod audience;
mod bench;
mod bench_measure;
mod demo;
mod demo_html;
mod log;
mod matching;
mod measure;
mod node;
mod query;
mod rta;
mod synth;

/// Jingteng: an open, self-hostable marketing data clean room.
///
/// A media platform, a retailer and brands each run a node; the nodes match their users
/// with private set intersection and answer only aggregate questions under privacy
/// rules the engine enforces. See the README and docs/ for the whole picture.
#[derive(Debug, Parser)]
#[command(name = "jingteng", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(demo::DemoArgs),
    /// Generate a synthetic social / retail / brand world with known ground truth.
    ///
    /// Writes every party's tables as CSV and Parquet under DIR (social/, retail/,
    /// brand/), the hidden ground truth under DIR/truth/ and DIR/truth.json. The same
    /// seed and scale give byte-identical files. See docs/synthetic-world.md.
    Synth(SynthArgs),
    /// Match the parties' users with private set intersection.
    ///
    /// Local mode (--spec): runs every party's side of the ECDH-PSI protocol over
    /// ristretto255 in one process, each with its own fresh key over its own table.
    /// Networked mode (--collab --dir): the node at --dir hosts; every member node
    /// contributes its imported table, re-blinding the others' batches over mutual TLS.
    /// Either way records are linked by identifier priority (phone > email > device >
    /// opaque) and the match report is printed: per party and identifier column the rows,
    /// valid, rejected (by reason) and ambiguous values; per set of parties the people
    /// matched, overall and per identifier type. See docs/matching.md.
    Match(MatchArgs),
    /// Ask an aggregate question in SQL; the engine enforces the privacy rules.
    ///
    /// Local mode (--spec): the parties' files are matched and joined into the
    /// pseudonymous view (kept under --state, rebuilt when a file changes), where every
    /// table is `party.table` with a `person` column instead of identifiers. The query
    /// is checked on its logical plan: only allowed aggregates over at least k people
    /// leave; identifiers, row-level output, MIN/MAX of protected columns, HAVING,
    /// LIMIT before aggregating, subqueries, UNION and joins that multiply a person's
    /// rows are refused with the rule (exit 3). In DP mode each answer costs ε from the
    /// analyst's budget (exit 4 when spent) and identical re-runs are free.
    ///
    /// Networked mode (--collab ID --dir NODE): the node at NODE sends the query to the
    /// collaboration's host over mutual TLS; the host checks and releases it the same way
    /// on the joined view of its last networked match, and the budget is that of
    /// PARTY:ANALYST. See docs/privacy.md.
    Query(QueryArgs),
    /// Run a ready analysis (overlap, profile, 4A funnel, cross-purchase) under the same
    /// rules, in local mode (--spec) or at the host (--collab ID --dir NODE).
    Insight(InsightArgs),
    /// Closed-loop measurement: attribution of retail orders to media exposures,
    /// incremental lift from the randomised holdout, reach and frequency across media,
    /// program metrics, and the sample-size calculator.
    ///
    /// Local mode (--spec) over the same joined view as `query`, or at the host
    /// (--collab ID --dir NODE) over the joined view of its last networked match. Every
    /// figure about people is released by the engine under the privacy rules (at the
    /// host, on the budget of PARTY:ANALYST), and every report states the match rate it
    /// stands on. See docs/measurement.md.
    Measure(measure::MeasureArgs),
    /// Create a node's data directory: identity, TLS certificate, empty catalog.
    ///
    /// Writes DIR/node.toml (no secrets), DIR/catalog.sqlite, DIR/tls/cert.pem and, in
    /// DIR/secrets/ (mode 0700), the Ed25519 signing key and TLS private key (mode 0600).
    /// Refuses a directory that is not empty.
    Init(InitArgs),
    /// Import a CSV or Parquet file as a new version of one of this node's tables.
    ///
    /// The collaboration spec names the table, its file and its columns' roles; roles
    /// give types (record id, identifiers and dimensions are text, measures whole
    /// numbers, timestamps RFC 3339 instants). Columns the spec does not list are not
    /// imported. A bad value is reported with file, line and column, and a failed import
    /// leaves nothing behind; every import is a new version and is audited.
    Import(ImportArgs),
    /// Run the node: the node-to-node API over mutual TLS until Ctrl-C or SIGTERM.
    ///
    /// Listens on node.toml's `listen` address (loopback by default) and accepts only
    /// peers whose certificate an active (fully signed) contract in the catalog pins.
    /// At the host of a collaboration it also delivers, every INTERVAL, the audiences
    /// defined with `refresh = "INTERVAL"` (checked every 30 s; see docs/audiences.md),
    /// logging refreshes and failures to stderr.
    ///
    /// With --rta-listen ADDR it also answers the media platform's real-time bid
    /// requests (`GET /v1/rta?campaign=AUDIENCE&device_md5=TOKEN`, plain HTTP/1.1) from
    /// the device-token lists of the audiences this node defined (docs/audiences.md).
    Serve(ServeArgs),
    /// Collaboration contracts: publish this node's card, propose, sign, check.
    #[command(subcommand)]
    Collab(CollabCommand),
    /// The node's jobs (match runs it hosted) and their states.
    Jobs(AuditArgs),
    /// The node's audit log: every import, match, query, audience and export.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Measure performance.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Audiences for the media platform: define, size, deliver, list (local mode with
    /// --spec; at the collaboration's host with --collab ID --dir NODE).
    ///
    /// Networked mode sends the request from the node at --dir to the host the signed
    /// contract names, over mutual TLS: the host checks and evaluates the audience on
    /// its joined view (built by `jingteng match --collab`), releases only its size
    /// (charged to PARTY:ANALYST) and, on `deliver`, sends the media node only the rows
    /// of its own identity table, which that node turns into its own user ids under
    /// NODE/audiences/, leaving out the users it recorded with `jingteng forget
    /// --collab`, and sends the audience's owner the version's device tokens (HMAC of
    /// the device MD5 under its secret key, never ids) for the owner's RTA endpoint
    /// (`jingteng serve --rta-listen`). See docs/audiences.md.
    #[command(subcommand)]
    Audience(audience::AudienceCommand),
    /// Record a person's opt-out or deletion at a party and propagate it.
    ///
    /// Local mode (`--spec`): recorded in the state's catalog; the joined view is rebuilt
    /// at once without the person (at every party), audiences and RTA leave them out.
    /// Networked mode (`--collab ID --dir NODE`): recorded in the node's own catalog, for
    /// the node's own party's record; from the next networked match on, the node leaves
    /// the record out (its identifiers are not blinded, its rows are not shared), so the
    /// host's report and joined view no longer hold it; a media node also leaves the
    /// person out of every audience version delivered to it (a deletion also rewrites
    /// the versions it already holds) and sends the person's device token as a
    /// suppression to the owners of those audiences, whose RTA endpoints say no for it
    /// at once. See docs/audiences.md.
    Forget(audience::ForgetArgs),
    /// Real-time bidding (RTA): serve the endpoint in local mode, and the device tokens
    /// a media node's ad server sends between nodes.
    #[command(subcommand)]
    Rta(RtaCommand),
}

#[derive(Debug, Subcommand)]
enum RtaCommand {
    /// Print a device's RTA token at a media node: HMAC-SHA256 of the device's 16-byte
    /// MD5 under the node's secret RTA key (`secrets/rta.key`, made on first need),
    /// truncated to 16 bytes, as 32 hex digits. The media platform's ad server sends
    /// it as `device_md5` in networked mode; use this to check its implementation.
    Token(RtaTokenArgs),
    /// Local mode: serve the RTA endpoint (`GET /v1/rta?campaign=AUDIENCE&device_md5=HEX`,
    /// plain HTTP/1.1) from the audiences delivered to a media party under --spec: each
    /// audience's latest version is a campaign named after it, its users keyed by the MD5
    /// of their device id; opt-outs and deletions are suppressed. Every --reload-every
    /// seconds it looks for new deliveries and `jingteng forget` requests, and swaps a
    /// rebuilt index in at once. Between nodes, use `jingteng serve --rta-listen`.
    Serve(RtaServeArgs),
}

#[derive(Debug, clap::Args)]
struct RtaServeArgs {
    /// The collaboration spec (local mode).
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
    /// The local state folder `jingteng audience deliver` wrote to; default: `.jingteng`
    /// next to the spec.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The media party whose delivered audiences make the index.
    #[arg(long, default_value = "social", value_name = "PARTY")]
    party: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7481", value_name = "ADDR")]
    listen: String,
    /// Seconds between checks for new deliveries and data-rights requests.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    reload_every: u64,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("device_in").required(true).args(["device_md5", "device"])))]
struct RtaTokenArgs {
    /// The media node's data directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The MD5 of the canonical device id, 32 hex digits.
    #[arg(long, value_name = "HEX")]
    device_md5: Option<String>,
    /// A raw device id (with --device-type): canonicalised and hashed as Tencent Ads
    /// hashes device uploads.
    #[arg(long, value_name = "RAW", requires = "device_type")]
    device: Option<String>,
    /// The raw device id's type: imei, oaid, idfa, caid, mac.
    #[arg(long, value_name = "TYPE")]
    device_type: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Where a query runs and who asks.
#[derive(Debug, clap::Args)]
struct QueryTarget {
    /// The collaboration spec (local mode): every party's files are read here.
    #[arg(long, value_name = "FILE", required_unless_present = "collab")]
    spec: Option<PathBuf>,
    /// Networked mode: the collaboration whose host answers. The question goes from the
    /// node at --dir to the host the signed contract names, over mutual TLS; the host
    /// checks it against the contract's rules on its joined view (built by the last
    /// `jingteng match --collab`) and charges the budget of `PARTY:ANALYST`.
    #[arg(long, value_name = "ID", requires = "dir", conflicts_with_all = ["spec", "state"])]
    collab: Option<String>,
    /// Networked mode: this node's data directory.
    #[arg(long, value_name = "DIR", requires = "collab")]
    dir: Option<PathBuf>,
    /// Local mode: folder for the joined view and the catalog (budget ledger, answer
    /// cache, audit log); default: `.jingteng` next to the spec.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Who asks: the privacy budget is per analyst.
    #[arg(long, default_value = "analyst")]
    analyst: String,
    /// Memory one query may use, in MiB (local mode; a host applies its own).
    #[arg(long, default_value_t = 4096, value_name = "MIB")]
    memory_mb: usize,
    /// Time one query may take, in seconds (local mode; a host applies its own).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    timeout: u64,
    /// Print JSON: columns, rows (each with whether it was noised and at what scale),
    /// the release summary and the remaining budget.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    #[command(flatten)]
    target: QueryTarget,
    /// The query, e.g. "SELECT age_band, COUNT(DISTINCT person) FROM social.users GROUP BY age_band".
    sql: String,
    /// Check the query and print the plan that would run (with the person id carried to
    /// the release aggregate) and the rules that apply; run nothing, spend nothing.
    #[arg(long)]
    explain: bool,
}

#[derive(Debug, clap::Args)]
struct InsightArgs {
    #[command(flatten)]
    target: QueryTarget,
    /// overlap | profile | funnel | cross-purchase.
    template: String,
    /// profile: the dimension, as party.table.column (e.g. social.users.age_band).
    #[arg(long)]
    dimension: Option<String>,
    /// profile: only people also known to this party.
    #[arg(long)]
    of: Option<String>,
    /// cross-purchase: the table (default retail.orders).
    #[arg(long)]
    table: Option<String>,
    /// cross-purchase: the column (default category).
    #[arg(long)]
    column: Option<String>,
    /// funnel: the brand (default Aurora, the synthetic world's).
    #[arg(long)]
    brand: Option<String>,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["spec", "collab"])))]
struct MatchArgs {
    /// Local mode: the collaboration spec (TOML), e.g. the collab.toml `jingteng synth`
    /// writes; every party's files are read in this process.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Networked mode: the active collaboration to match, hosted by the node at --dir
    /// (which must be serving); every member contributes from its own node.
    #[arg(long, value_name = "ID", requires = "dir")]
    collab: Option<String>,
    /// Networked mode: the host node's data directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Networked mode: give up (exit 1, naming the members still missing) after this
    /// many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    timeout: u64,
    /// Print the report as JSON; its `overlap` object is keyed like truth.json's.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// The party this node is (lower-case letters, digits, _), e.g. retail.
    #[arg(long)]
    party: String,
    /// The data directory to create.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Print what was made as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The collaboration spec that describes the table.
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
    /// The table, as the spec names it for this node's party (e.g. users, orders).
    #[arg(long)]
    table: String,
    /// The file to import (default: the table's path in the spec).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Print what was imported as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Also serve the RTA endpoint (plain HTTP/1.1) on this address, e.g.
    /// 127.0.0.1:7481: one campaign per audience this node defined (campaign id = the
    /// audience's name), from the device-token lists its activation parties sent;
    /// updated at once when a list or a suppression arrives.
    #[arg(long, value_name = "ADDR")]
    rta_listen: Option<String>,
}

#[derive(Debug, Subcommand)]
enum CollabCommand {
    /// Print this node's member card (party, public key, pinned certificate, endpoint)
    /// as JSON, to hand to the proposer.
    Card(NodeArg),
    /// Propose a contract for a spec with the other members' cards; signs it as this node.
    Propose(ProposeArgs),
    /// Check a contract and sign it as this node; records it in the catalog.
    Sign(ContractArgs),
    /// Show who has signed a contract; exits 1 if a signature does not verify.
    Status(ContractArgs),
}

#[derive(Debug, clap::Args)]
struct NodeArg {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ProposeArgs {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The collaboration spec.
    #[arg(long, value_name = "FILE")]
    spec: PathBuf,
    /// Another member's card (from `jingteng collab card`); repeat for each.
    #[arg(long = "card", value_name = "FILE")]
    cards: Vec<PathBuf>,
    /// Where to write the contract.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ContractArgs {
    /// The node's data directory (for `status`, optional: records the contract there).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The contract file; `sign` adds this node's signature to it in place.
    #[arg(long, value_name = "FILE")]
    contract: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the audit log; exits 1 and names the first entry that
    /// was changed or removed.
    Verify(AuditArgs),
    /// Print the audit log.
    Log(AuditArgs),
}

#[derive(Debug, clap::Args)]
struct AuditArgs {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Two-party PSI against the bare curve-operation ceiling, measured in one run.
    ///
    /// Generates two parties of N records each (raw identifiers, overlapping by half),
    /// runs the full match, and reports records/s/core of the bare curve work
    /// (`ceiling_per_core`), of the match (`psi_per_core`), their `ratio`, and peak
    /// memory per record. Build with --release for meaningful figures.
    Psi(BenchPsiArgs),
    /// Real-time bidding decisions (RTA): an index of N users, its build time and
    /// memory, in-process decisions, and `wrk` over loopback with keep-alive.
    ///
    /// Builds a synthetic index (hashed IMEIs in 1–3 of 16 campaigns, 1 in 100 users
    /// suppressed), times decisions in process, serves `GET /v1/rta` on loopback and, if
    /// `wrk` is installed, runs it with varied device ids and reports decisions/s and p99
    /// latency. Build with --release for meaningful figures.
    Rta(BenchRtaArgs),
    /// The match between nodes: bytes on the wire per record and the networked match's
    /// time against local mode's, from one run.
    ///
    /// Writes two parties of N records (raw identifiers, overlapping by half) into a
    /// temporary folder, makes a node for each on loopback (the first hosts), signs
    /// the contract, imports, runs the networked match, then the same match in local
    /// mode. Counts request and response bodies between the nodes (not TLS or HTTP
    /// headers). Build with --release for meaningful figures.
    Network(BenchNetworkArgs),
    /// What the privacy layer costs: the policy check, and insight queries through the
    /// engine against the same SQL on plain DataFusion over the same files (ratios from
    /// one run), in threshold and DP mode.
    ///
    /// Uses the world of --spec, or generates one of --scale into --out (the `medium`
    /// world has ≥ 20 M exposure rows). Build with --release for meaningful figures.
    Query(BenchQueryArgs),
    /// How often the lift's 95% intervals cover the true effect, over simulated
    /// holdout studies released with DP through an in-memory engine.
    LiftCoverage(bench_measure::LiftCoverageArgs),
    /// Last-touch attribution through the engine (threshold and DP) against the same
    /// attribution as plain DataFusion SQL: same figures checked, times, ratio and each
    /// side's peak memory (each side in its own process).
    Attribution(bench_measure::AttributionBenchArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("world").required(true).args(["spec", "scale"])))]
struct BenchQueryArgs {
    /// An existing world's collaboration spec.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Generate a world of this scale (tiny, small, medium, large or a number of people).
    #[arg(long, value_parser = parse_scale)]
    scale: Option<jingteng_synth::Scale>,
    /// Where to generate the world (with --scale).
    #[arg(long, default_value = "bench-world", value_name = "DIR")]
    out: PathBuf,
    /// Timed runs per query (after one warm-up), medians reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct BenchRtaArgs {
    /// Users in the audiences.
    #[arg(long, default_value_t = 10_000_000)]
    users: u64,
    /// Campaigns (three tiers each).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    campaigns: u32,
    /// In-process decisions to time.
    #[arg(long, default_value_t = 2_000_000)]
    lookups: u64,
    /// Seconds of wrk (0: skip the HTTP part).
    #[arg(long, default_value_t = 10)]
    wrk_seconds: u32,
    /// wrk keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    wrk_threads: u32,
    /// Server worker threads (0: one per core, or one with --pin).
    #[arg(long, default_value_t = 0)]
    server_threads: usize,
    /// Keep the server on the first core and wrk on the last, so that neither waits for
    /// the other's time slice (needs two cores).
    #[arg(long)]
    pin: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct BenchNetworkArgs {
    /// Records per party.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(2..=100_000_000))]
    records: u64,
    /// Identifier types per record: 1 (phone), 2 (+ e-mail), 3 (+ device).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=3))]
    keys: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct BenchPsiArgs {
    /// Records per party.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Identifier types per record: 1 (phone), 2 (+ e-mail), 3 (+ device).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=3))]
    keys: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct SynthArgs {
    /// Directory to write the world into (created; must be empty unless --force).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// tiny (5 k people), small (50 k), medium (1 M), large (10 M), or a number of people.
    #[arg(long, default_value = "small")]
    scale: String,
    /// Replace DIR if it exists and is not empty.
    #[arg(long)]
    force: bool,
    /// Media parties: 1 (social) or 2 (social and a news app, `news`, with its own users
    /// and exposures for some of the same campaigns, for cross-media reach).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    media: u8,
    /// Print the summary as JSON (the truth included) instead of tables.
    #[arg(long)]
    json: bool,
}

/// When stdout is a pipe its reader closed (`jingteng audience list | head`), Rust's
/// `println!` panics; a command-line tool should just stop, as `cat` does. SIGPIPE
/// stays ignored (a node's sockets must not kill it), so this one panic, and only it,
/// ends the process quietly with the status a SIGPIPE death gives (128 + 13).
fn exit_quietly_on_a_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_a_closed_stdout();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Match(args) => matching::run(args),
        Command::Query(args) => query::query(args),
        Command::Insight(args) => query::insight(args),
        Command::Measure(args) => measure::run(args),
        Command::Bench(BenchCommand::Psi(args)) => bench::psi(args),
        Command::Bench(BenchCommand::Rta(args)) => bench::rta(args),
        Command::Bench(BenchCommand::Query(args)) => bench::query(args),
        Command::Bench(BenchCommand::Network(args)) => bench::network(args),
        Command::Bench(BenchCommand::LiftCoverage(args)) => bench_measure::lift_coverage(args),
        Command::Bench(BenchCommand::Attribution(args)) => bench_measure::attribution(args),
        Command::Init(args) => node::init(args),
        Command::Import(args) => node::import(args),
        Command::Serve(args) => node::serve(args),
        Command::Collab(CollabCommand::Card(args)) => node::collab_card(args),
        Command::Collab(CollabCommand::Propose(args)) => node::collab_propose(args),
        Command::Collab(CollabCommand::Sign(args)) => node::collab_sign(args),
        Command::Collab(CollabCommand::Status(args)) => node::collab_status(args),
        Command::Jobs(args) => node::jobs(args),
        Command::Audit(AuditCommand::Verify(args)) => node::audit_verify(args),
        Command::Audit(AuditCommand::Log(args)) => node::audit_log(args),
        Command::Audience(cmd) => audience::run(cmd),
        Command::Forget(args) => audience::forget(args),
        Command::Rta(RtaCommand::Token(args)) => node::rta_token(args),
        Command::Rta(RtaCommand::Serve(args)) => rta::serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            use jingteng_engine::Error as E;
            match e.downcast_ref::<E>() {
                Some(r @ (E::Refused(_) | E::ResourceLimit(_))) => {
                    eprintln!("{r}");
                    ExitCode::from(3)
                }
                Some(b @ E::BudgetExhausted { .. }) => {
                    eprintln!("{b}");
                    ExitCode::from(4)
                }
                _ if audience_refusal(&e) => {
                    eprintln!("{e}");
                    ExitCode::from(3)
                }
                _ => match e.downcast_ref::<jingteng_node::Error>() {
                    // The host refused: the same statuses as a refusal in local mode.
                    Some(jingteng_node::Error::Remote { code, detail, .. }) => {
                        eprintln!("{detail}");
                        match code.as_str() {
                            "refused" | "resource-limit" | "audience-too-small" | "consent"
                            | "lookalike" => ExitCode::from(3),
                            "budget-exhausted" => ExitCode::from(4),
                            _ => ExitCode::FAILURE,
                        }
                    }
                    _ => {
                        eprintln!("error: {e:#}");
                        ExitCode::FAILURE
                    }
                },
            }
        }
    }
}

/// An audience refused by a rule (policy, size, consent): exit 3 like a query's.
fn audience_refusal(e: &anyhow::Error) -> bool {
    use jingteng_audience::Error as A;
    matches!(
        e.downcast_ref::<A>(),
        Some(A::RuleRefused { .. } | A::TooSmall { .. } | A::Consent { .. })
    )
}

/// A progress bar on standard error (hidden when it is not a terminal).
pub(crate) fn progress_bar(len: u64, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Parses a scale argument with a message that says what is accepted.
pub(crate) fn parse_scale(s: &str) -> anyhow::Result<jingteng_synth::Scale> {
    s.parse().context("--scale")
}

//! `jingteng audience create|show|deliver|list` and `jingteng forget`: audiences over
//! the joined view, delivered to the media party as its own user ids, and per-user
//! opt-out and deletion — in local mode (`--spec`) or at the collaboration's host
//! (`--collab ID --dir NODE`, through the node API). The work is `jingteng_audience`'s
//! and `jingteng_node`'s; this module parses arguments and prints.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jingteng_audience::{
    Definition, DefinitionFile, ForgetKind, LookalikeReport, LookalikeSection, SizeRelease, Store,
    VersionRecord,
};

use crate::QueryTarget;

/// Audiences: rules over allowed columns of every party, released by size only,
/// delivered to the media party as its own user ids.
///
/// Local mode (--spec FILE) reads every party's files in one place. Networked mode
/// (--collab ID --dir NODE) sends the request from this node to the host the signed
/// contract names, over mutual TLS: the host checks and evaluates the audience on its
/// joined view (built by `jingteng match --collab`), releases only its size (charged to
/// PARTY:ANALYST) and, on `deliver`, sends the media node only its own rows, which that
/// node turns into its own user ids under NODE/audiences/.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AudienceCommand {
    /// Define an audience (from --file or flags), evaluate it and release its size.
    ///
    /// The rules are checked against the owners' rules (identifiers, record ids and the
    /// person id are refused; only allowed columns); the people are found by trusted
    /// code at the host and never shown. An audience under its minimum size (default
    /// 1,000) is refused with its size class; otherwise its size is released through the
    /// engine (DP by default: it costs ε from the analyst's budget) and the definition
    /// is saved for `deliver`. See docs/audiences.md.
    Create(CreateArgs),
    /// Show an audience's definition and its delivered versions.
    Show(NameArgs),
    /// Evaluate an audience again on the current view and deliver the next version to
    /// its media party as that party's own user ids (refresh on demand).
    ///
    /// An audience created with --refresh INTERVAL is also delivered by a networked
    /// host's `jingteng serve` on its own, every INTERVAL; in local mode, run this from
    /// cron.
    ///
    /// Refused when a dataset the audience reads does not allow activation (its spec
    /// `consent`). Local mode writes STATE/delivered/<party>/<name>/v<N>.parquet and
    /// its manifest; networked mode has the host deliver to the media node, which writes
    /// MEDIA_NODE/audiences/<digest>/delivered/<party>/<name>/v<N>.parquet, leaving out
    /// the users it has recorded as opted out or deleted (`jingteng forget --collab`).
    Deliver(DeliverArgs),
    /// List the saved audiences with their latest version (networked: the host's, and
    /// the versions this node holds as a media party).
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    target: QueryTarget,
    /// The definition as TOML (docs/audiences.md); flags below override its fields.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Name (with flags).
    #[arg(long)]
    name: Option<String>,
    /// The media party that receives the audience (with flags; default social).
    #[arg(long)]
    activate: Option<String>,
    /// A rule people must match, e.g. "retail.orders.category = 'hair_care' AND ts within 180 days"; repeat.
    #[arg(long = "include", value_name = "RULE")]
    include: Vec<String>,
    /// A rule people must not match, e.g. "brand.crm"; repeat.
    #[arg(long = "exclude", value_name = "RULE")]
    exclude: Vec<String>,
    /// The day (YYYY-MM-DD) 'within N days' counts back from the end of (default: now).
    #[arg(long, value_name = "DATE")]
    as_of: Option<String>,
    /// Minimum size (default 1,000).
    #[arg(long, value_name = "PEOPLE")]
    min_size: Option<u64>,
    /// Expand with the N media users a look-alike model ranks highest.
    #[arg(long, value_name = "N")]
    lookalike: Option<u64>,
    /// Look-alike: share of the seed held out to measure precision (default 0.2).
    #[arg(long, value_name = "SHARE")]
    holdout: Option<f64>,
    /// Deliver the next version on a schedule: every INTERVAL (90m, 24h, 7d; from 1
    /// minute to 365 days). Networked mode: the host's `jingteng serve` delivers it on
    /// its own (the first version within 30 s, then once the latest is INTERVAL old),
    /// each release charged to this member and analyst. Local mode only stores it: there
    /// is no server, so run `jingteng audience deliver NAME --spec …` from cron.
    #[arg(long, value_name = "INTERVAL")]
    refresh: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct NameArgs {
    #[command(flatten)]
    target: QueryTarget,
    /// The audience.
    name: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DeliverArgs {
    #[command(flatten)]
    target: QueryTarget,
    /// The audience.
    name: String,
    /// The party to deliver to; must be the audience's activation party.
    #[arg(long, value_name = "PARTY")]
    to: Option<String>,
    /// Also print the RTA index the deliveries make. Local mode: the media party's
    /// index (campaigns, users, suppressed devices). Networked mode: the token lists
    /// the node at --dir holds as the audience's owner (the activation party sends the
    /// owner each version's device tokens on delivery; `jingteng serve --rta-listen`
    /// answers bid requests from them).
    #[arg(long)]
    rta: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    target: QueryTarget,
}

/// `jingteng forget`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["opt_out", "delete"])))]
pub(crate) struct ForgetArgs {
    /// Local mode: the collaboration spec; every party's files are read here.
    #[arg(long, value_name = "FILE", required_unless_present = "collab")]
    spec: Option<PathBuf>,
    /// Local mode: the state folder (default: `.jingteng` next to the spec).
    #[arg(long, value_name = "DIR", conflicts_with = "collab")]
    state: Option<PathBuf>,
    /// Networked mode: the collaboration (its signed contract is in the node's catalog).
    /// The request stays in the node's own catalog and takes effect at the next
    /// networked match (`jingteng match --collab ID --dir HOST` at the host).
    #[arg(long, value_name = "ID", requires = "dir", conflicts_with_all = ["spec", "state"])]
    collab: Option<String>,
    /// Networked mode: this node's data directory.
    #[arg(long, value_name = "NODE", requires = "collab")]
    dir: Option<PathBuf>,
    /// The party holding the record. Local mode: required. Networked mode: the node's
    /// own party (the default); a node records requests about its own records only.
    #[arg(long)]
    party: Option<String>,
    /// The party's own record id of the person (e.g. a social user_id).
    #[arg(long, value_name = "VALUE")]
    id: String,
    /// Opt out of personalised marketing: out of audiences, deliveries and RTA.
    #[arg(long)]
    opt_out: bool,
    /// Delete: out of everything, including versions already delivered.
    #[arg(long)]
    delete: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `jingteng forget --collab ID --dir NODE`: the request goes into the node's own
/// catalog, about its own party's record; the node leaves the record out of every
/// networked match from the next one on.
fn forget_at_node(
    a: &ForgetArgs,
    collab: &str,
    dir: &Path,
    kind: ForgetKind,
) -> anyhow::Result<()> {
    let node = jingteng_node::NodeDir::open(dir)?;
    let spec = jingteng_node::collaboration(&node, collab)?;
    let me = node.config().party.clone();
    let party = a.party.clone().unwrap_or_else(|| me.clone());
    if party != me {
        anyhow::bail!(
            "this node is {me}: it records requests about its own records only; {party}'s \
             operator runs `jingteng forget --collab {collab} --dir NODE` at {party}'s node"
        );
    }
    let out = jingteng_node::forget_here(&node, collab, &a.id, kind)?;
    // The owners of audiences delivered to this node suppress the user's RTA token.
    let rta = tokio::runtime::Runtime::new()?
        .block_on(jingteng_node::forget_at_owners(&node, collab, &a.id))?;
    let host = spec.host().unwrap_or("the host").to_string();
    if a.json {
        let v = serde_json::json!({
            "recorded": out.recorded,
            "removed_from_delivered_versions": out.removed_from_delivered_versions,
            "rta_suppressed_at": rta,
            "collaboration": collab,
            "takes_effect": "at the next networked match",
            "host": host,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{} at {party} {}",
        kind.as_str(),
        if out.recorded.new {
            "recorded"
        } else {
            "was already recorded"
        }
    );
    if kind == ForgetKind::Delete {
        println!(
            "{} entries removed from audience versions already delivered to this node",
            out.removed_from_delivered_versions
        );
    }
    println!(
        "from the next networked match on, this node leaves the record out: its identifiers \
         are not blinded and its rows are not shared, so {host}'s match report and joined \
         view no longer hold it"
    );
    println!(
        "the host's view changes when the match runs again: `jingteng match --collab {collab} \
         --dir HOST` at {host}'s node; every audience version delivered to this node from now \
         on leaves them out"
    );
    for p in &rta {
        if p.pushed {
            println!(
                "RTA: {} suppressed the user's device token at once (owner of an audience delivered here)",
                p.owner
            );
        } else {
            eprintln!(
                "warning: RTA: {} did not receive the suppression: {}",
                p.owner,
                p.detail.as_deref().unwrap_or("no reason given")
            );
        }
    }
    Ok(())
}

fn state_dir(spec: &Path, state: Option<&PathBuf>) -> PathBuf {
    state
        .cloned()
        .unwrap_or_else(|| spec.parent().unwrap_or(Path::new(".")).join(".jingteng"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn run(cmd: AudienceCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cmd {
            AudienceCommand::Create(a) => create(a).await,
            AudienceCommand::Show(a) => show(a).await,
            AudienceCommand::Deliver(a) => deliver(a).await,
            AudienceCommand::List(a) => list(a).await,
        }
    })
}

fn definition(a: &CreateArgs) -> anyhow::Result<Definition> {
    let mut file = match &a.file {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str::<DefinitionFile>(&text)
                .with_context(|| format!("audience definition {}", p.display()))?
        }
        None => DefinitionFile {
            name: a
                .name
                .clone()
                .context("give --file DEF.toml, or --name with --include/--exclude rules")?,
            description: String::new(),
            activate: "social".into(),
            include: Vec::new(),
            exclude: Vec::new(),
            min_size: None,
            as_of: None,
            refresh: None,
            lookalike: None,
        },
    };
    if let Some(n) = &a.name {
        file.name = n.clone();
    }
    if let Some(p) = &a.activate {
        file.activate = p.clone();
    }
    file.include.extend(a.include.iter().cloned());
    file.exclude.extend(a.exclude.iter().cloned());
    if a.as_of.is_some() {
        file.as_of = a.as_of.clone();
    }
    if a.min_size.is_some() {
        file.min_size = a.min_size;
    }
    if a.refresh.is_some() {
        file.refresh = a.refresh.clone();
    }
    if let Some(n) = a.lookalike {
        file.lookalike = Some(LookalikeSection {
            size: n,
            holdout: a.holdout,
            seed: None,
        });
    }
    Ok(Definition::from_file(file)?)
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let def = definition(&a)?;
    if let Some(remote) = crate::query::remote(&a.target) {
        let (node, collab) = remote?;
        let req = jingteng_node::CreateAudience {
            definition: def.file().clone(),
            analyst: a.target.analyst.clone(),
        };
        let out = jingteng_node::audience_create(&node, collab, &req).await?;
        if a.target.json {
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        println!(
            "audience {:?} for {}, kept at the host of {collab} (defined by {})",
            out.name, out.activate, out.owner
        );
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["rule", "runs at the host as"]);
        for r in &out.rules {
            t.add_row([r.rule.as_str(), r.sql.as_str()]);
        }
        println!("{t}");
        println!("size class {}", out.size_class);
        print_size(&out.size);
        if let Some(l) = &out.lookalike {
            print_lookalike(l);
        }
        match def.refresh() {
            Some(r) => println!(
                "saved; the host delivers it to {} every {r} on its own (the first version within \
                 30 s), each size release charged to {}:{}; `jingteng audience list --collab \
                 {collab} --dir …` shows when the next one is due",
                out.activate, out.owner, a.target.analyst
            ),
            None => println!(
                "saved; `jingteng audience deliver {} --collab {collab} --dir …` delivers it to {}",
                out.name, out.activate
            ),
        }
        return Ok(());
    }
    let mut engine = crate::query::open(&a.target).await?;
    let eval = jingteng_audience::evaluate(&engine, &def, now(), None).await?;
    let size = jingteng_audience::release_size(&mut engine, &eval, &a.target.analyst).await?;
    let state = crate::query::state_dir(&a.target)?;
    Store::new(&state).save(&def)?;
    if a.target.json {
        let v = serde_json::json!({
            "name": def.name(),
            "activate": def.activate(),
            "rules": eval.rules().iter().map(|(r, sql)| serde_json::json!({"rule": r, "sql": sql})).collect::<Vec<_>>(),
            "size": size,
            "lookalike": eval.lookalike(),
            "refresh": def.refresh().map(|r| r.to_string()),
            "saved": true,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("audience {:?} for {}", def.name(), def.activate());
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["rule", "runs at the host as"]);
    for (r, sql) in eval.rules() {
        t.add_row([r.as_str(), sql.as_str()]);
    }
    println!("{t}");
    print_size(&size);
    if let Some(l) = eval.lookalike() {
        print_lookalike(l);
    }
    println!(
        "saved; `jingteng audience deliver {}` materialises it at {}",
        def.name(),
        def.activate()
    );
    if let Some(r) = def.refresh() {
        println!("{}", local_refresh_note(def.name(), r));
    }
    Ok(())
}

/// What `refresh` means in local mode: nothing runs it.
fn local_refresh_note(name: &str, every: jingteng_audience::Refresh) -> String {
    format!(
        "refresh every {every}: stored, but local mode has no server to run it; run \
         `jingteng audience deliver {name} --spec …` from cron (a networked host's \
         `jingteng serve` refreshes on its own)"
    )
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(ms: i64) -> String {
    jingteng_engine::datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime(ms)
        .map_or_else(
            || format!("{ms} ms after 1970"),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// One line about a networked audience's scheduled refresh.
fn refresh_line(r: &jingteng_node::RefreshStatus) -> String {
    let mut line = format!(
        "refreshed by the host every {}; next due {}",
        r.every,
        utc(r.next_due_ms)
    );
    if r.failures > 0 {
        line.push_str(&format!(
            " (retrying: {} failed in a row, last: {})",
            r.failures,
            r.last_error.as_deref().unwrap_or("?")
        ));
    }
    line
}

fn print_size(s: &SizeRelease) {
    match (s.people, s.release.mode.as_str()) {
        (Some(n), "dp") => {
            let b = s
                .release
                .noise
                .first()
                .and_then(|n| n.bound95)
                .map(|b| format!(" (±{b} at 95%)"))
                .unwrap_or_default();
            println!(
                "size: about {n} people{b}, released with differential privacy (ε {})",
                s.release.epsilon.unwrap_or_default()
            );
        }
        (Some(n), _) => println!("size: {n} people (threshold release)"),
        (None, _) => println!("size: withheld by the release (too few people to show)"),
    }
    if s.cached {
        println!(
            "  (the same audience over the same view: served from the cache, no budget spent)"
        );
    }
    if let Some(r) = s.budget_remaining {
        println!("  privacy budget left: ε {r:.2}");
    }
}

fn print_lookalike(l: &LookalikeReport) {
    println!(
        "look-alike: {} media users added (asked {}), {} features",
        l.added,
        l.size,
        l.features.len()
    );
    println!(
        "  held-out check ({:.0}% of the seed): precision {:.1}% in the top {:.1}% vs {:.1}% at random (lift {:.2}×), recall {:.1}%",
        l.holdout * 100.0,
        l.precision * 100.0,
        l.eval_share * 100.0,
        l.base_rate * 100.0,
        l.lift,
        l.recall * 100.0
    );
    println!("  (a floor: unlabelled users who would belong to the seed count as misses)");
}

fn versions_json(v: &[VersionRecord]) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

async fn show(a: NameArgs) -> anyhow::Result<()> {
    let (def, versions, refresh) = if let Some(remote) = crate::query::remote(&a.target) {
        let (node, collab) = remote?;
        let d = jingteng_node::audience_show(&node, collab, &a.name).await?;
        if !a.target.json {
            println!("# defined by {}, kept at the host of {collab}", d.owner);
        }
        (Definition::from_file(d.definition)?, d.versions, d.refresh)
    } else {
        let state = crate::query::state_dir(&a.target)?;
        let store = Store::new(&state);
        (store.definition(&a.name)?, store.versions(&a.name)?, None)
    };
    if a.target.json {
        let v = serde_json::json!({
            "definition": def.file(),
            "versions": versions_json(&versions),
            "refresh": refresh,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!("{}", def.to_toml()?);
    println!();
    match (&refresh, def.refresh()) {
        (Some(r), _) => println!("{}", refresh_line(r)),
        (None, Some(every)) => println!("{}", local_refresh_note(def.name(), every)),
        (None, None) => {}
    }
    if versions.is_empty() {
        println!("not delivered yet");
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "version",
        "delivered (Unix ms)",
        "to",
        "size class",
        "released size",
        "release",
        "view",
    ]);
    for v in &versions {
        t.add_row([
            v.version.to_string(),
            v.created_ms.to_string(),
            v.to.clone(),
            v.size_class.clone(),
            v.released_people
                .map_or("withheld".into(), |n| n.to_string()),
            v.release_mode.clone(),
            v.view_fingerprint.clone(),
        ]);
    }
    println!("{t}");
    if let Some(l) = versions.last().and_then(|v| v.lookalike.as_ref()) {
        print_lookalike(l);
    }
    Ok(())
}

async fn deliver(a: DeliverArgs) -> anyhow::Result<()> {
    if let Some(remote) = crate::query::remote(&a.target) {
        let (node, collab) = remote?;
        if let Some(to) = &a.to {
            let d = jingteng_node::audience_show(&node, collab, &a.name).await?;
            anyhow::ensure!(
                *to == d.definition.activate,
                "audience {:?} is for {}; it cannot be delivered to {to} (create another with activate = {to:?})",
                a.name,
                d.definition.activate
            );
        }
        let req = jingteng_node::DeliverAudience {
            analyst: a.target.analyst.clone(),
        };
        let out = jingteng_node::audience_deliver(&node, collab, &a.name, &req).await?;
        // What this node holds for the audience's RTA campaign, as its owner.
        let held = if a.rta {
            Some(
                jingteng_node::rta_held(&node, collab)?
                    .into_iter()
                    .find(|h| h.audience == a.name),
            )
        } else {
            None
        };
        if a.target.json {
            let mut v = serde_json::to_value(&out)?;
            if let Some(h) = &held {
                v["rta_held"] = serde_json::to_value(h)?;
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        println!(
            "audience {:?} version {} delivered by the host to {} as its own user ids (in that node's directory: {})",
            a.name, out.record.version, out.record.to, out.record.file
        );
        println!("size class {}", out.record.size_class);
        print_size(&out.size);
        if let Some(l) = &out.record.lookalike {
            print_lookalike(l);
        }
        match &out.rta {
            Some(p) if p.pushed => println!(
                "RTA: {} sent the version's device tokens to {}, the audience's owner",
                out.record.to, p.owner
            ),
            Some(p) => eprintln!(
                "warning: RTA: the version's device tokens did not reach {}: {}",
                if p.owner.is_empty() {
                    "the owner"
                } else {
                    p.owner.as_str()
                },
                p.detail.as_deref().unwrap_or("no reason given")
            ),
            None => {}
        }
        match held {
            Some(Some(h)) => println!(
                "RTA index at {} (campaign {:?}): version {} from {}, {} device tokens, {} suppressed since",
                node.config().party,
                h.audience,
                h.version,
                h.from,
                h.tokens,
                h.suppressed
            ),
            Some(None) => println!(
                "RTA index at {}: no token list for {:?} (only the audience's owner receives one)",
                node.config().party,
                a.name
            ),
            None => {}
        }
        return Ok(());
    }
    let state = crate::query::state_dir(&a.target)?;
    let store = Store::new(&state);
    let def = store.definition(&a.name)?;
    if let Some(to) = &a.to
        && to != def.activate()
    {
        anyhow::bail!(
            "audience {:?} is for {}; it cannot be delivered to {to} (create another with activate = {to:?})",
            def.name(),
            def.activate()
        );
    }
    let mut engine = crate::query::open(&a.target).await?;
    let collab = jingteng_match::read_spec(crate::query::spec_of(&a.target)?)?;
    let out = jingteng_audience::deliver(
        &mut engine,
        &collab,
        &state,
        &store,
        &def,
        &a.target.analyst,
        now(),
        None,
    )
    .await?;
    let rta = if a.rta {
        let spec_dir = crate::query::spec_of(&a.target)?
            .parent()
            .unwrap_or(Path::new("."));
        Some(jingteng_audience::rta_index(&store, &collab, spec_dir, &state, def.activate())?.1)
    } else {
        None
    };
    if a.target.json {
        let v = serde_json::json!({"delivered": out.record, "size": out.size, "rta": rta});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "audience {:?} version {} delivered to {} as its own user ids: {}",
        def.name(),
        out.record.version,
        out.record.to,
        state.join(&out.record.file).display()
    );
    println!("size class {}", out.record.size_class);
    print_size(&out.size);
    if let Some(l) = &out.record.lookalike {
        print_lookalike(l);
    }
    if let Some(r) = rta {
        println!(
            "RTA index of {}'s deliveries: campaigns {}, {} users listed, {} suppressed devices, {} users without a device id",
            def.activate(),
            r.campaigns.join(", "),
            r.listed,
            r.suppressed,
            r.without_device
        );
    }
    Ok(())
}

async fn list_remote(a: &ListArgs) -> anyhow::Result<bool> {
    let Some(remote) = crate::query::remote(&a.target) else {
        return Ok(false);
    };
    let (node, collab) = remote?;
    let audiences = jingteng_node::audience_list(&node, collab).await?;
    let held = jingteng_node::delivered_here(&node, collab)?;
    let rta = jingteng_node::rta_held(&node, collab)?;
    if a.target.json {
        let held: Vec<serde_json::Value> = held
            .iter()
            .map(|(name, v)| serde_json::json!({"name": name, "versions": v}))
            .collect();
        let v =
            serde_json::json!({"audiences": audiences, "delivered_here": held, "rta_held": rta});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(true);
    }
    if audiences.is_empty() {
        println!(
            "no audiences at the host of {collab} yet (jingteng audience create --collab {collab})"
        );
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header([
            "audience",
            "for",
            "defined by",
            "versions",
            "latest size class",
            "released size",
            "refresh",
            "next due",
        ]);
        for s in &audiences {
            let last = s.versions.last();
            t.add_row([
                s.name.clone(),
                s.activate.clone(),
                s.owner.clone(),
                s.versions.len().to_string(),
                last.map_or("-".into(), |l| l.size_class.clone()),
                last.and_then(|l| l.released_people)
                    .map_or("-".into(), |n| n.to_string()),
                s.refresh
                    .as_ref()
                    .map_or("on demand".into(), |r| format!("every {}", r.every)),
                s.refresh.as_ref().map_or("-".into(), |r| {
                    if r.failures > 0 {
                        format!("{} (retry; {} failed)", utc(r.next_due_ms), r.failures)
                    } else {
                        utc(r.next_due_ms)
                    }
                }),
            ]);
        }
        println!("{t}");
    }
    if !held.is_empty() {
        println!("delivered to this node ({}):", node.config().party);
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["audience", "version", "users", "file", "SHA-256"]);
        for (name, versions) in &held {
            for v in versions {
                t.add_row([
                    name.clone(),
                    v.version.to_string(),
                    v.users.to_string(),
                    v.file.clone(),
                    v.sha256.chars().take(16).collect(),
                ]);
            }
        }
        println!("{t}");
    }
    if !rta.is_empty() {
        println!(
            "RTA token lists held by this node as owner ({}; served by `jingteng serve --rta-listen`):",
            node.config().party
        );
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["campaign", "from", "version", "tokens", "suppressed"]);
        for h in &rta {
            t.add_row([
                h.audience.clone(),
                h.from.clone(),
                h.version.to_string(),
                h.tokens.to_string(),
                h.suppressed.to_string(),
            ]);
        }
        println!("{t}");
    }
    Ok(true)
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    if list_remote(&a).await? {
        return Ok(());
    }
    let state = crate::query::state_dir(&a.target)?;
    let store = Store::new(&state);
    let mut rows = Vec::new();
    for name in store.names()? {
        let def = store.definition(&name)?;
        let versions = store.versions(&name)?;
        rows.push((def, versions));
    }
    if a.target.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(d, v)| serde_json::json!({"name": d.name(), "activate": d.activate(), "versions": v.len(), "latest": v.last(), "refresh": d.refresh().map(|r| r.to_string())}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no audiences yet (jingteng audience create)");
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "audience",
        "for",
        "versions",
        "latest size class",
        "released size",
        "look-alike",
        "refresh",
    ]);
    for (d, v) in &rows {
        let last = v.last();
        t.add_row([
            d.name().to_string(),
            d.activate().to_string(),
            v.len().to_string(),
            last.map_or("-".into(), |l| l.size_class.clone()),
            last.and_then(|l| l.released_people)
                .map_or("-".into(), |n| n.to_string()),
            d.lookalike().map_or("-".into(), |l| format!("+{}", l.size)),
            d.refresh()
                .map_or("on demand".into(), |r| format!("every {r} (cron)")),
        ]);
    }
    println!("{t}");
    if rows.iter().any(|(d, _)| d.refresh().is_some()) {
        println!(
            "local mode has no server to refresh audiences: run `jingteng audience deliver NAME \
             --spec …` from cron"
        );
    }
    Ok(())
}

pub(crate) fn forget(a: ForgetArgs) -> anyhow::Result<()> {
    let kind = if a.delete {
        ForgetKind::Delete
    } else {
        ForgetKind::OptOut
    };
    let (spec, party) = match (&a.collab, &a.dir, &a.spec) {
        (Some(collab), Some(dir), _) => return forget_at_node(&a, collab, dir, kind),
        (_, _, Some(spec)) => (
            spec.clone(),
            a.party
                .clone()
                .context("--party is required with --spec (the party holding the record)")?,
        ),
        _ => anyhow::bail!("give --spec FILE (local mode) or --collab ID --dir NODE"),
    };
    let state = state_dir(&spec, a.state.as_ref());
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let collab = jingteng_match::read_spec(&spec)?;
    let catalog_path = state.join("catalog.sqlite");
    let mut catalog = jingteng_catalog::Catalog::open(&catalog_path)
        .with_context(|| format!("opening {}", catalog_path.display()))?;
    let report = jingteng_audience::forget(&mut catalog, &collab, &party, &a.id, kind, "operator")?;
    drop(catalog);
    let runtime = tokio::runtime::Runtime::new()?;
    let info = runtime.block_on(jingteng_engine::view::build_local(
        &spec,
        &state,
        std::sync::Arc::new(|_: &str, _: u64| {}),
    ))?;
    let store = Store::new(&state);
    let purged = if kind == ForgetKind::Delete {
        jingteng_audience::purge_delivered(&store, &collab, &state)?
    } else {
        0
    };
    if a.json {
        let v = serde_json::json!({
            "recorded": report,
            "view_fingerprint": info.fingerprint,
            "excluded_people": info.excluded_people,
            "removed_from_delivered_versions": purged,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{} at {} {}",
        kind.as_str(),
        party,
        if report.new {
            "recorded"
        } else {
            "was already recorded"
        }
    );
    println!(
        "view rebuilt ({}): {} people left out in all; {} cached answers dropped",
        info.fingerprint, info.excluded_people, report.cache_cleared
    );
    if kind == ForgetKind::Delete {
        println!("{purged} entries removed from versions already delivered");
    }
    println!(
        "the next version of every audience and every RTA index built from now on leave them out"
    );
    Ok(())
}

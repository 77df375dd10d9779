//! `jingteng measure`: closed-loop measurement over the joined view (local mode, or at
//! the host of a collaboration with --collab):
//! attribution of the retailer's orders to the media party's exposures, incremental
//! lift from the randomised holdout, and the pre-campaign sample-size calculator.
//! Every figure about people is released by the engine under the privacy rules.

use anyhow::Context;
use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jingteng_measure::{
    AttributionReport, AttributionSettings, CampaignId, Coverage, Dimension, LiftReport,
    LiftSettings, Measure, Model, ProgramReport, ReachReport, Released, Report, stats,
};

use crate::QueryTarget;

/// Closed-loop measurement: attribution, incremental lift, sample size.
#[derive(Debug, clap::Args)]
pub(crate) struct MeasureArgs {
    #[command(subcommand)]
    command: MeasureCommand,
}

#[derive(Debug, Subcommand)]
enum MeasureCommand {
    /// Credit the retailer's orders to the media party's exposures, per campaign.
    ///
    /// Last touch by default: an order of a brand goes to the latest click on one of
    /// the brand's campaigns in the 7 days before it, else to the latest impression in
    /// the day before it; at most 8 credited orders per person. Prints attributed
    /// conversions, GMV, CVR per click and per impression (of people linked to the
    /// retailer), CPA and ROAS per campaign, and breakdowns. Every figure is released
    /// by the engine (threshold or DP) and each report states the match rate it
    /// stands on. See docs/measurement.md.
    Attribution(AttributionArgs),
    /// Incremental lift from the randomised holdout, per campaign.
    ///
    /// Test (may be exposed) against control (never exposed), both restricted to
    /// people linked to the retailer: conversion rates, ITT difference with a Newcombe
    /// interval, relative lift with a log-ratio interval (both widened by the DP noise
    /// when released with DP), incremental conversions and GMV, iROAS.
    Lift(LiftArgs),
    /// Reach and frequency per campaign, de-duplicated across the media parties.
    ///
    /// Reach on each media party (people with at least one impression), de-duplicated
    /// reach across them through the match, overlap, incremental reach of each partner
    /// (people only it reached) and the frequency histogram (impressions on all parties
    /// together, 1 … 9, 10+). Works with one media party too. Every figure is released
    /// by the engine; the report states the match the de-duplication stands on.
    Reach(ReachArgs),
    /// Program metrics per calendar month across campaigns and brands.
    ///
    /// Spend, campaigns and brands active (from the campaign table), impressions and
    /// clicks, attributed conversions and GMV, CVR per click and per impression (of
    /// people linked to the retailer), month-on-month change, and the re-investment
    /// rate both as the share of last month's brands spending again and as the share
    /// of spend from returning brands. Conversions use the attribution options below;
    /// the report names their version so months compare like with like.
    Program(ProgramArgs),
    /// Before launch: people needed per group to detect a change of the conversion
    /// rate, or the smallest change groups of a given size can detect.
    Plan(PlanArgs),
}

#[derive(Debug, clap::Args)]
struct AttributionArgs {
    #[command(flatten)]
    target: QueryTarget,
    /// Only this campaign (e.g. C01).
    #[arg(long, value_name = "ID")]
    campaign: Option<String>,
    /// last-touch, first-touch or linear.
    #[arg(long, default_value = "last-touch")]
    model: String,
    /// Click window, in days.
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    click_window_days: i64,
    /// View (impression) window, in hours.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    view_window_hours: i64,
    /// Credited orders per person, at most.
    #[arg(long, default_value_t = 8)]
    cap: u32,
    /// Breakdowns, comma-separated: placement, day, age_band, channel, touch (each is
    /// one more released query; none: --by '').
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "placement,age_band,channel"
    )]
    by: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct LiftArgs {
    #[command(flatten)]
    target: QueryTarget,
    /// Only this campaign (e.g. C01).
    #[arg(long, value_name = "ID")]
    campaign: Option<String>,
    /// Days after a campaign's last day in which purchases still count.
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    tail_days: i64,
}

#[derive(Debug, clap::Args)]
struct ReachArgs {
    #[command(flatten)]
    target: QueryTarget,
    /// Only this campaign (e.g. C01); in DP mode the way to get one campaign's reach
    /// without the per-person group bound cutting it.
    #[arg(long, value_name = "ID")]
    campaign: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ProgramArgs {
    #[command(flatten)]
    target: QueryTarget,
    /// Attribution model of the conversions: last-touch, first-touch or linear.
    #[arg(long, default_value = "last-touch")]
    model: String,
    /// Click window, in days.
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    click_window_days: i64,
    /// View (impression) window, in hours.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    view_window_hours: i64,
    /// Credited orders per person, at most.
    #[arg(long, default_value_t = 8)]
    cap: u32,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// Conversion rate expected without the campaign (e.g. 0.01).
    #[arg(long)]
    baseline: f64,
    /// Conversion rate to detect (e.g. 0.011); or give --test and --control for the
    /// minimum detectable rate.
    #[arg(long, required_unless_present_all = ["test", "control"])]
    target: Option<f64>,
    /// People in the test group (with --control: minimum detectable rate).
    #[arg(long, requires = "control")]
    test: Option<u64>,
    /// People in the control group.
    #[arg(long, requires = "test")]
    control: Option<u64>,
    /// Significance level (two-sided).
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Power.
    #[arg(long, default_value_t = 0.8)]
    power: f64,
    /// Share of people held out as control.
    #[arg(long, default_value_t = 0.5)]
    control_share: f64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: MeasureArgs) -> anyhow::Result<()> {
    match args.command {
        MeasureCommand::Attribution(a) => attribution(a),
        MeasureCommand::Lift(a) => lift(a),
        MeasureCommand::Reach(a) => reach(a),
        MeasureCommand::Program(a) => program(a),
        MeasureCommand::Plan(a) => plan(&a),
    }
}

fn campaign(id: Option<&str>) -> anyhow::Result<Option<CampaignId>> {
    Ok(id.map(CampaignId::parse).transpose()?)
}

/// Runs a measurement: at the host of --collab over its joined view, or in local mode
/// over the view of --spec; then prints its report.
fn measure(target: &QueryTarget, measure: Measure) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        if let Some(remote) = crate::query::remote(target) {
            let (node, collab) = remote?;
            let req = jingteng_node::MeasureRequest {
                measure,
                analyst: target.analyst.clone(),
            };
            return Ok(jingteng_node::measure_host(&node, collab, &req).await?);
        }
        let mut engine = crate::query::open(target).await?;
        // The view was just built (or found up to date) by `open`: this only reads it.
        let state = crate::query::state_dir(target)?;
        let info = jingteng_engine::view::load(&state).context("reading the joined view")?;
        measure
            .run(&mut engine, &info, &target.analyst)
            .await
            .map_err(|e| match e {
                // A refusal exits as a query's does (see main).
                jingteng_measure::Error::Engine(e) => anyhow::Error::from(e),
                e => anyhow::Error::from(e),
            })
    })?;
    let json = target.json;
    match report {
        Report::Attribution(r) => emit(&r, json, print_attribution),
        Report::Lift(r) => emit(&r, json, print_lift),
        Report::Reach(r) => emit(&r, json, print_reach),
        Report::Program(r) => emit(&r, json, print_program),
    }
}

fn settings(
    model: &str,
    click_window_days: i64,
    view_window_hours: i64,
    cap: u32,
) -> anyhow::Result<AttributionSettings> {
    Ok(AttributionSettings {
        model: model.parse::<Model>()?,
        click_window_s: click_window_days
            .checked_mul(86_400)
            .context("--click-window-days is too large")?,
        view_window_s: view_window_hours
            .checked_mul(3_600)
            .context("--view-window-hours is too large")?,
        cap,
        ..Default::default()
    })
}

fn attribution(args: AttributionArgs) -> anyhow::Result<()> {
    let settings = settings(
        &args.model,
        args.click_window_days,
        args.view_window_hours,
        args.cap,
    )?;
    let by = args
        .by
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Dimension>())
        .collect::<Result<Vec<_>, _>>()?;
    let campaign = campaign(args.campaign.as_deref())?;
    measure(
        &args.target,
        Measure::Attribution {
            settings,
            campaign,
            by,
        },
    )
}

fn lift(args: LiftArgs) -> anyhow::Result<()> {
    let settings = LiftSettings {
        tail_days: args.tail_days,
        ..Default::default()
    };
    let campaign = campaign(args.campaign.as_deref())?;
    measure(&args.target, Measure::Lift { settings, campaign })
}

fn reach(args: ReachArgs) -> anyhow::Result<()> {
    let campaign = campaign(args.campaign.as_deref())?;
    measure(&args.target, Measure::Reach { campaign })
}

fn program(args: ProgramArgs) -> anyhow::Result<()> {
    let settings = settings(
        &args.model,
        args.click_window_days,
        args.view_window_hours,
        args.cap,
    )?;
    measure(&args.target, Measure::Program { settings })
}

/// Prints a report as JSON or as its readable tables.
fn emit<T: serde::Serialize>(report: &T, json: bool, print: fn(&T)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print(report);
    }
    Ok(())
}

fn plan(args: &PlanArgs) -> anyhow::Result<()> {
    match (args.target, args.test, args.control) {
        (_, Some(test), Some(control)) => {
            let rate = stats::minimum_detectable_rate(
                args.baseline,
                test,
                control,
                args.alpha,
                args.power,
            )?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "baseline": args.baseline, "test": test, "control": control,
                        "alpha": args.alpha, "power": args.power,
                        "minimum_detectable_rate": rate,
                        "minimum_detectable_relative_lift": rate / args.baseline - 1.0,
                    }))?
                );
            } else {
                println!(
                    "with {test} test and {control} control people, a baseline of {:.3}% and a two-sided test at α = {}, power {}: the smallest detectable rate is {:.4}% (relative lift {:+.1}%)",
                    100.0 * args.baseline,
                    args.alpha,
                    args.power,
                    100.0 * rate,
                    100.0 * (rate / args.baseline - 1.0)
                );
            }
        }
        (Some(target), _, _) => {
            let n = stats::sample_size(
                args.baseline,
                target,
                args.alpha,
                args.power,
                args.control_share,
            )?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "baseline": args.baseline, "target": target,
                        "alpha": args.alpha, "power": args.power,
                        "control_share": args.control_share,
                        "test": n.test, "control": n.control,
                    }))?
                );
            } else {
                println!(
                    "to detect {:.3}% → {:.3}% (two-sided, α = {}, power {}, {:.0}% held out): {} test and {} control people, after the match (only linked people can be seen to convert)",
                    100.0 * args.baseline,
                    100.0 * target,
                    args.alpha,
                    args.power,
                    100.0 * args.control_share,
                    n.test,
                    n.control
                );
            }
        }
        _ => anyhow::bail!("give --target, or --test and --control"),
    }
    Ok(())
}

/// Fen as yuan with two decimals.
fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

fn yuan_f(fen: f64) -> String {
    format!("{:.2}", fen / 100.0)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "–".to_string(), f)
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn print_coverage(c: &Coverage) {
    println!("match: {}", c.caveat);
}

fn print_releases(released: &[Released]) {
    let mut suppressed = 0;
    let mut dp = false;
    for r in released {
        suppressed += r.release.suppressed_rows.unwrap_or(0);
        dp |= r.release.mode == "dp";
    }
    if dp {
        println!(
            "released with differential privacy ({} queries); figures carry discrete Laplace noise, groups under the noisy threshold are left out; --json lists each query's noise",
            released.len()
        );
    } else if let Some(k) = released.iter().find_map(|r| r.release.min_people) {
        println!(
            "released in threshold mode: every figure covers at least {k} people; {suppressed} group(s) suppressed"
        );
    }
    if let Some(b) = released.iter().rev().find_map(|r| r.budget.as_ref()) {
        println!(
            "privacy budget: ε {:.2} spent of {:.2}, {:.2} left",
            b.spent, b.limit, b.remaining
        );
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

fn print_attribution(r: &AttributionReport) {
    let s = &r.settings;
    println!(
        "attribution: {}, clicks within {} d, views within {} h, click preferred, at most {} credited orders per person",
        s.model.as_str(),
        s.click_window_s / 86_400,
        s.view_window_s / 3_600,
        s.cap
    );
    print_coverage(&r.coverage);
    let mut t = table(&[
        "campaign",
        "brand",
        "spend ¥",
        "conversions",
        "GMV ¥",
        "clicks*",
        "impressions*",
        "CVR/click",
        "CVR/impr.",
        "CPA ¥",
        "ROAS",
    ]);
    for c in &r.campaigns {
        let conv = if s.model == Model::Linear {
            format!("{:.2}", c.conversions)
        } else {
            format!("{:.0}", c.conversions)
        };
        t.add_row(vec![
            c.campaign_id.clone(),
            c.brand.clone(),
            yuan(c.spend_fen),
            if c.released {
                conv
            } else {
                "suppressed".into()
            },
            if c.released {
                yuan(c.gmv_fen)
            } else {
                "–".into()
            },
            opt(c.linked_clicks, |n| n.to_string()),
            opt(c.linked_impressions, |n| n.to_string()),
            opt(c.cvr_click, pct),
            opt(c.cvr_impression, |x| format!("{:.3}%", 100.0 * x)),
            opt(c.cpa_fen, yuan),
            opt(c.roas, |x| format!("{x:.2}")),
        ]);
    }
    println!("{t}");
    println!(
        "* of people linked to the retailer (the CVR denominators); spend, CPA and ROAS are over the whole campaign, so CPA is an upper and ROAS a lower bound"
    );
    for b in &r.breakdowns {
        let col = format!("{:?}", b.dimension).to_lowercase();
        println!("\nby {col}");
        let mut t = table(&["campaign", &col, "conversions", "GMV ¥"]);
        for row in &b.rows {
            t.add_row(vec![
                row.campaign_id.clone(),
                row.value.clone(),
                format!("{:.2}", row.conversions),
                yuan(row.gmv_fen),
            ]);
        }
        println!("{t}");
    }
    print_releases(&r.released);
}

fn interval(i: Option<stats::Interval>, f: fn(f64) -> String) -> String {
    opt(i, |i| {
        format!("{} [{}, {}]", f(i.estimate), f(i.low), f(i.high))
    })
}

fn print_lift(r: &LiftReport) {
    println!(
        "lift from the randomised holdout: a person converts with an order of the campaign's brand from its first day until {} days after its last; intention to treat (everyone assigned), {:.0}% intervals",
        r.settings.tail_days,
        100.0 * r.settings.confidence
    );
    print_coverage(&r.coverage);
    let mut t = table(&[
        "campaign",
        "test",
        "control",
        "test rate",
        "control rate",
        "ITT difference",
        "relative lift",
        "incr. conv.",
        "incr. GMV ¥",
        "iROAS",
    ]);
    for c in &r.campaigns {
        t.add_row(vec![
            c.campaign_id.clone(),
            opt(c.test.as_ref(), |g| g.people.to_string()),
            opt(c.control.as_ref(), |g| g.people.to_string()),
            opt(c.test.as_ref(), |g| pct(g.rate)),
            opt(c.control.as_ref(), |g| pct(g.rate)),
            interval(c.itt_difference, |x| format!("{:+.2}pt", 100.0 * x)),
            interval(c.relative_lift, |x| format!("{:+.1}%", 100.0 * x)),
            opt(c.incremental_conversions, |x| format!("{x:.1}")),
            interval(c.incremental_gmv, yuan_f),
            interval(c.iroas_interval, |x| format!("{x:.3}")),
        ]);
    }
    println!("{t}");
    println!(
        "groups hold only people linked to the retailer; iROAS divides their incremental GMV by the whole spend (a lower bound)"
    );
    println!("GMV and iROAS intervals: {}", r.value_interval);
    for n in &r.not_yet {
        println!("not yet: {n}");
    }
    print_releases(&r.released);
}

fn print_reach(r: &ReachReport) {
    println!(
        "reach and frequency over {} media part{} ({}): people with at least one impression",
        r.parties.len(),
        if r.parties.len() == 1 { "y" } else { "ies" },
        r.parties.join(", ")
    );
    println!("match: {}", r.coverage.caveat);
    let multi = r.parties.len() >= 2;
    let mut header = vec!["campaign".to_string(), "reach (de-dup.)".to_string()];
    for p in &r.parties {
        header.push(format!("on {p}"));
    }
    if multi {
        header.push("overlap".into());
        for p in &r.parties {
            header.push(format!("only {p}"));
        }
        header.push("de-dup. at least".into());
    }
    let refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = table(&refs);
    for c in &r.campaigns {
        let mut row = vec![c.campaign_id.clone(), c.deduplicated.to_string()];
        for p in &c.parties {
            row.push(p.reach.to_string());
        }
        if multi {
            row.push(opt(c.overlap, |n| n.to_string()));
            for p in &c.parties {
                row.push(opt(p.incremental, |n| n.to_string()));
            }
            row.push(c.deduplicated_at_least.to_string());
        }
        t.add_row(row);
    }
    println!("{t}");
    if multi {
        println!(
            "only PARTY: incremental reach, the people that partner alone reached; overlap: people reached on two or more; de-dup. at least: the largest single-party reach, the floor if every exposed person had been linked"
        );
    }
    if r.suppressed > 0 {
        println!(
            "{} campaign(s) left out: too few people reached",
            r.suppressed
        );
    }
    println!("\nfrequency: people by impressions on all media parties together");
    let mut header = vec!["campaign"];
    header.extend(jingteng_measure::FREQUENCY_BUCKETS);
    let mut t = table(&header);
    for c in &r.campaigns {
        let mut row = vec![c.campaign_id.clone()];
        row.extend(c.frequency.iter().map(|b| opt(b.people, |n| n.to_string())));
        t.add_row(row);
    }
    println!("{t}");
    for n in &r.notes {
        println!("note: {n}");
    }
    print_releases(&r.released);
}

fn signed_pct(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

fn print_program(r: &ProgramReport) {
    println!(
        "program metrics per month; conversions credited by attribution settings {} ({}): compare months and reports only under the same version",
        r.settings_version, r.settings_label
    );
    print_coverage(&r.coverage);
    let mut t = table(&[
        "month",
        "spend ¥",
        "Δ spend",
        "campaigns",
        "Δ camp.",
        "brands",
        "impressions",
        "Δ impr.",
        "clicks",
        "conversions*",
        "GMV ¥*",
        "CVR/click*",
        "Δ CVR",
        "brands back",
        "spend back",
    ]);
    for m in &r.months {
        let c = &m.change;
        t.add_row(vec![
            m.month.clone(),
            yuan(m.spend_fen),
            opt(c.spend, signed_pct),
            m.campaigns.to_string(),
            opt(c.campaigns, signed_pct),
            m.brands.len().to_string(),
            opt(m.impressions, |n| n.to_string()),
            opt(c.impressions, signed_pct),
            opt(m.clicks, |n| n.to_string()),
            opt(m.conversions, |x| format!("{x:.0}")),
            opt(m.gmv_fen, yuan),
            opt(m.cvr_click, pct),
            opt(c.cvr_click, signed_pct),
            opt(m.returning_brand_share, |x| format!("{:.0}%", 100.0 * x)),
            opt(m.returning_spend_share, |x| format!("{:.0}%", 100.0 * x)),
        ]);
    }
    println!("{t}");
    println!(
        "* people linked to the retailer only (CVR per click divides by their clicks); Δ: change from the month before; brands back: of last month's brands, the share spending again (re-investment by brands); spend back: the share of this month's spend from those brands (re-investment by spend)"
    );
    let (seen, estimate) = r.months.iter().fold((0.0, 0.0), |(s, e), m| {
        (
            s + m.conversions.unwrap_or(0.0),
            e + m.conversions_estimate_all.unwrap_or(0.0),
        )
    });
    if estimate > 0.0 {
        println!(
            "unlinked people are invisible: {seen:.0} conversions seen; divided by the retailer's match rate ({:.1}%), about {estimate:.0} over all people (an estimate that leans high: some members the match missed never used the media party)",
            100.0 * r.coverage.retail_match_rate
        );
    }
    println!(
        "{} brands in the period: {}",
        r.brands.len(),
        r.brands.join(", ")
    );
    for n in &r.notes {
        println!("note: {n}");
    }
    print_releases(&r.released);
}

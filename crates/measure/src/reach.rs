//! Reach and frequency of campaigns, de-duplicated across media parties.
//!
//! Trusted code builds `measure.reach`: one row per person (the joined view's `person`)
//! and campaign with at least one impression on any media party, with the frequency
//! bucket of all their impressions together (`1` … `9`, `10+`), whether they were
//! reached on each party (`on_PARTY`) and on that party only (`only_PARTY`). Every
//! figure is then an aggregate over it released by [`Engine::query`]:
//!
//! - reach per party (`SUM(on_PARTY)`), de-duplicated reach (`COUNT(DISTINCT person)`)
//!   and incremental reach of each partner (`SUM(only_PARTY)`: people reached on that
//!   partner and no other) in one query, one row per campaign;
//! - the frequency histogram (`COUNT(DISTINCT person)` per campaign and bucket).
//!
//! The overlap (people reached on two or more parties) is de-duplicated reach minus the
//! incremental reaches. De-duplication stands on the match: a person's records at two
//! media parties are one person only when the match linked them, so an exposed person
//! whose records were not linked counts once per party.

use jingteng_engine::policy::{ColumnRule, PERSON, Role};
use jingteng_engine::{Engine, ViewInfo};
use serde::{Deserialize, Serialize};

use crate::release::{CampaignId, Released, Rows, ask, int, text};
use crate::{Error, Result};

/// The derived table of people reached per campaign.
pub const REACH: &str = "measure.reach";
/// Frequency buckets, in order: impressions 1 … 9, then 10 or more.
pub const FREQUENCY_BUCKETS: [&str; 10] = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10+"];

/// The media parties of a view: every party with an `exposures` table of `campaign_id`
/// and `kind` about people, in the order of the collaboration's parties.
pub fn media_parties(engine: &Engine, info: &ViewInfo) -> Vec<String> {
    info.report
        .parties
        .iter()
        .filter(|p| {
            engine
                .policy()
                .tables
                .get(&format!("{p}.exposures"))
                .is_some_and(|t| {
                    t.about_people
                        && t.columns.contains_key("campaign_id")
                        && t.columns.contains_key("kind")
                })
        })
        .cloned()
        .collect()
}

fn check_parties(parties: &[String]) -> Result<()> {
    if parties.is_empty() {
        return Err(Error::Input(
            "reach needs at least one media party (a party with an exposures table of campaign_id and kind)".into(),
        ));
    }
    for p in parties {
        if p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(Error::Input(format!(
                "party name {p:?}: lower-case letters, digits and _ only"
            )));
        }
    }
    Ok(())
}

/// The trusted plan of `measure.reach`, as SQL over the raw view.
fn reach_sql(parties: &[String]) -> String {
    let n = parties.len();
    let union = parties
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let flags = (0..n)
                .map(|j| format!("CAST({} AS BIGINT) AS i{j}", u8::from(i == j)))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT person, campaign_id, {flags} FROM {p}.exposures WHERE kind = 'impression' AND person IS NOT NULL"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let sums = (0..n)
        .map(|j| format!("SUM(i{j}) AS n{j}"))
        .collect::<Vec<_>>()
        .join(", ");
    let total = (0..n)
        .map(|j| format!("n{j}"))
        .collect::<Vec<_>>()
        .join(" + ");
    let mut flags = Vec::new();
    for (i, p) in parties.iter().enumerate() {
        flags.push(format!(
            "CAST(CASE WHEN n{i} > 0 THEN 1 ELSE 0 END AS BIGINT) AS on_{p}"
        ));
    }
    for (i, p) in parties.iter().enumerate() {
        let others = (0..n)
            .filter(|j| *j != i)
            .map(|j| format!(" AND n{j} = 0"))
            .collect::<String>();
        flags.push(format!(
            "CAST(CASE WHEN n{i} > 0{others} THEN 1 ELSE 0 END AS BIGINT) AS only_{p}"
        ));
    }
    format!(
        "WITH e AS ({union}),
        p AS (SELECT person, campaign_id, {sums} FROM e GROUP BY person, campaign_id)
        SELECT person, campaign_id,
               arrow_cast(CASE WHEN {total} >= 10 THEN '10+' ELSE CAST({total} AS VARCHAR) END, 'Utf8') AS frequency,
               CAST({total} AS BIGINT) AS impressions,
               {}
        FROM p",
        flags.join(",\n               ")
    )
}

/// The rules of `measure.reach`'s columns, in order.
fn reach_columns(parties: &[String]) -> Vec<(String, ColumnRule)> {
    let rule = |role: Role, bounds: Option<(i64, i64)>| ColumnRule {
        role,
        bounds,
        aggregates: if role == Role::Measure {
            vec!["count".into(), "sum".into(), "avg".into()]
        } else {
            Vec::new()
        },
    };
    let mut columns = vec![
        (PERSON.to_string(), rule(Role::Person, None)),
        ("campaign_id".into(), rule(Role::Dimension, None)),
        ("frequency".into(), rule(Role::Dimension, None)),
        // Impressions beyond the top bucket add nothing to a frequency report: bound
        // them there.
        ("impressions".into(), rule(Role::Measure, Some((0, 10)))),
    ];
    for prefix in ["on", "only"] {
        for p in parties {
            columns.push((format!("{prefix}_{p}"), rule(Role::Measure, Some((0, 1)))));
        }
    }
    columns
}

/// Builds `measure.reach` over the media parties' exposures in the engine's trusted
/// session and registers it, released under the most restrictive rules of those
/// tables. Columns: `person`, `campaign_id`, `frequency` (`1` … `9`, `10+`),
/// `impressions`, then `on_PARTY` and `only_PARTY` (0/1) for each party.
pub async fn register_reach(engine: &mut Engine, parties: &[String]) -> Result<()> {
    check_parties(parties)?;
    let plan = engine
        .session()
        .sql(&reach_sql(parties))
        .await
        .map_err(|e| Error::Internal(format!("planning the reach table: {e}")))?
        .into_unoptimized_plan();
    let sources: Vec<String> = parties.iter().map(|p| format!("{p}.exposures")).collect();
    let refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    engine
        .register_derived(REACH, plan, reach_columns(parties), false, &refs)
        .await?;
    Ok(())
}

/// Reach of one campaign on one media party.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartyReach {
    /// The media party.
    pub party: String,
    /// People with at least one impression there.
    pub reach: i64,
    /// People reached there and on no other media party: the reach this partner adds
    /// (with two or more media parties).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<i64>,
}

/// One bucket of the frequency histogram.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrequencyBucket {
    /// Impressions, over all media parties: `1` … `9`, `10+`.
    pub impressions: String,
    /// People, or `None` when the bucket was not released (under the threshold or the
    /// DP group selection — or empty).
    pub people: Option<i64>,
}

/// One campaign's reach and frequency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignReach {
    /// The campaign.
    pub campaign_id: String,
    /// People reached on any media party, de-duplicated through the match.
    pub deduplicated: i64,
    /// Per media party.
    pub parties: Vec<PartyReach>,
    /// People reached on two or more media parties (de-duplicated reach minus the
    /// incremental reaches), with two or more parties.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<i64>,
    /// The de-duplicated reach if every exposed person's records had been linked could
    /// be as low as this (the largest single-party reach): the match only ever splits
    /// a person, so the truth lies between this and `deduplicated`.
    pub deduplicated_at_least: i64,
    /// People by impressions on all media parties together.
    pub frequency: Vec<FrequencyBucket>,
    /// Noise scale on `deduplicated` and on the histogram's counts (0 when exact).
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub noise_people: f64,
    /// Noise scale on each party's reach and incremental reach (0 when exact).
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub noise_party: f64,
}

/// What the de-duplication stands on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReachCoverage {
    /// Records (users) per media party.
    pub records: Vec<(String, u64)>,
    /// People linked at every media party (two or more parties).
    pub linked: Option<u64>,
    /// What the match does to the figures, in one sentence.
    pub caveat: String,
}

impl ReachCoverage {
    /// From the view's match report.
    pub fn from_view(info: &ViewInfo, parties: &[String]) -> Self {
        let r = &info.report;
        let records: Vec<(String, u64)> = parties
            .iter()
            .map(|p| (p.clone(), r.records.get(p).copied().unwrap_or(0)))
            .collect();
        if parties.len() < 2 {
            return Self {
                records,
                linked: None,
                caveat: format!(
                    "one media party ({}): reach needs no match and counts all its users who saw the campaign; add a second media party to de-duplicate across partners",
                    parties.first().map_or("none", String::as_str)
                ),
            };
        }
        let key = r
            .parties
            .iter()
            .filter(|p| parties.contains(p))
            .cloned()
            .collect::<Vec<_>>()
            .join("+");
        let linked = r.overlap.get(&key).map_or(0, |o| o.matched);
        let shares = records
            .iter()
            .map(|(p, n)| {
                format!(
                    "{:.1}% of {p}'s {n} users",
                    if *n == 0 {
                        0.0
                    } else {
                        100.0 * linked as f64 / *n as f64
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let caveat = format!(
            "de-duplication stands on {linked} people linked across {key} ({shares}): a person exposed on several parties whose records were not linked counts once per party, so de-duplicated reach and incremental reach are upper bounds and overlap a lower bound (the true de-duplicated reach is at least the largest single-party reach); reach on each party alone counts all its users and does not depend on the match"
        );
        Self {
            records,
            linked: Some(linked),
            caveat,
        }
    }
}

/// A reach and frequency report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReachReport {
    /// The media parties, in the collaboration's order.
    pub parties: Vec<String>,
    /// The match it stands on.
    pub coverage: ReachCoverage,
    /// Per campaign (campaigns whose row was released).
    pub campaigns: Vec<CampaignReach>,
    /// Campaigns with exposures whose figures were left out (under the threshold or
    /// the DP group selection), as a count.
    pub suppressed: u64,
    /// What to keep in mind reading the figures.
    pub notes: Vec<String>,
    /// Every query, with how it was released.
    pub released: Vec<Released>,
}

/// Releases the figures of an already registered `measure.reach` over `parties`
/// (the order of its `on_`/`only_` columns) through the engine's check, for `analyst`.
pub async fn release_reach(
    engine: &Engine,
    parties: &[String],
    campaign: Option<&CampaignId>,
    analyst: &str,
    log: &mut Vec<Released>,
) -> Result<(Vec<CampaignReach>, u64)> {
    check_parties(parties)?;
    let filter = CampaignId::filter(campaign, "");
    let multi = parties.len() >= 2;
    let mut sums: Vec<String> = parties
        .iter()
        .map(|p| format!("SUM(on_{p}) AS reach_{p}"))
        .collect();
    if multi {
        sums.extend(
            parties
                .iter()
                .map(|p| format!("SUM(only_{p}) AS incremental_{p}")),
        );
    }
    let totals = ask(
        engine,
        "reach per campaign: de-duplicated, per media party, incremental",
        format!(
            "SELECT campaign_id, COUNT(DISTINCT person) AS reach, {} FROM {REACH} {filter} GROUP BY campaign_id ORDER BY campaign_id",
            sums.join(", ")
        ),
        analyst,
        log,
    )
    .await?;
    let suppressed = totals.0.release.suppressed_rows.unwrap_or(0);
    let (ci, ri) = (totals.col("campaign_id")?, totals.col("reach")?);
    let noise_people = totals.noise_scale("reach");
    let noise_party = parties
        .first()
        .map_or(0.0, |p| totals.noise_scale(&format!("reach_{p}")));
    let mut out = Vec::new();
    for r in totals.rows() {
        let deduplicated = int(&r[ri], "reach")?.max(0);
        let mut by_party = Vec::new();
        for p in parties {
            let reach = int(&r[totals.col(&format!("reach_{p}"))?], "reach")?.max(0);
            let incremental = if multi {
                Some(
                    int(
                        &r[totals.col(&format!("incremental_{p}"))?],
                        "incremental reach",
                    )?
                    .max(0),
                )
            } else {
                None
            };
            by_party.push(PartyReach {
                party: p.clone(),
                reach,
                incremental,
            });
        }
        let overlap = multi.then(|| {
            (deduplicated - by_party.iter().filter_map(|p| p.incremental).sum::<i64>()).max(0)
        });
        let at_least = by_party.iter().map(|p| p.reach).max().unwrap_or(0);
        out.push(CampaignReach {
            campaign_id: text(&r[ci]),
            deduplicated,
            parties: by_party,
            overlap,
            deduplicated_at_least: at_least.min(deduplicated),
            frequency: FREQUENCY_BUCKETS
                .iter()
                .map(|b| FrequencyBucket {
                    impressions: (*b).to_string(),
                    people: None,
                })
                .collect(),
            noise_people,
            noise_party,
        });
    }

    let hist = ask(
        engine,
        "people per campaign by impressions on all media parties (1 … 9, 10+)",
        format!(
            "SELECT campaign_id, frequency, COUNT(DISTINCT person) AS people FROM {REACH} {filter} GROUP BY campaign_id, frequency ORDER BY campaign_id, frequency"
        ),
        analyst,
        log,
    )
    .await?;
    fill_histogram(&hist, &mut out)?;
    Ok((out, suppressed))
}

fn fill_histogram(hist: &Rows, out: &mut [CampaignReach]) -> Result<()> {
    let (ci, fi, pi) = (
        hist.col("campaign_id")?,
        hist.col("frequency")?,
        hist.col("people")?,
    );
    for r in hist.rows() {
        let id = text(&r[ci]);
        let bucket = text(&r[fi]);
        let Some(c) = out.iter_mut().find(|c| c.campaign_id == id) else {
            continue;
        };
        let Some(b) = c.frequency.iter_mut().find(|b| b.impressions == bucket) else {
            return Err(Error::Internal(format!("frequency bucket {bucket:?}")));
        };
        b.people = Some(int(&r[pi], "people")?.max(0));
    }
    Ok(())
}

/// Runs the reach and frequency report over `parties` (see [`media_parties`]):
/// registers `measure.reach` and releases its figures through the engine's check.
pub async fn reach(
    engine: &mut Engine,
    info: &ViewInfo,
    parties: &[String],
    campaign: Option<&CampaignId>,
    analyst: &str,
) -> Result<ReachReport> {
    register_reach(engine, parties).await?;
    let engine = &*engine;
    let mut log = Vec::new();
    let mut notes = Vec::new();
    if let Some(c) = campaign {
        // The campaign must exist at some media party: its campaigns table if it has
        // one (not about people, released as it is), else its exposures.
        let mut known = false;
        for p in parties {
            let table = if engine
                .policy()
                .tables
                .contains_key(&format!("{p}.campaigns"))
            {
                format!("{p}.campaigns")
            } else {
                continue;
            };
            let rows = ask(
                engine,
                "whether the campaign exists",
                format!(
                    "SELECT campaign_id FROM {table} WHERE campaign_id = '{}' GROUP BY campaign_id",
                    c.as_str()
                ),
                analyst,
                &mut log,
            )
            .await?;
            known |= !rows.rows().is_empty();
        }
        let has_campaigns_table = parties.iter().any(|p| {
            engine
                .policy()
                .tables
                .contains_key(&format!("{p}.campaigns"))
        });
        if has_campaigns_table && !known {
            return Err(Error::Input(format!(
                "there is no campaign {} in the media parties' campaigns tables ({})",
                c.as_str(),
                parties
                    .iter()
                    .map(|p| format!("{p}.campaigns"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let (campaigns, suppressed) =
        release_reach(engine, parties, campaign, analyst, &mut log).await?;
    let dp = log.iter().any(|r| r.release.mode == "dp");
    if dp {
        let groups = engine
            .policy()
            .tables
            .get(REACH)
            .map_or(1, |t| t.privacy.max_groups_per_person);
        if campaign.is_none() {
            notes.push(format!(
                "differential privacy counts each person in at most {groups} campaign(s) of one query: over all campaigns, people reached by several are counted in one of them, so figures are too low; ask about one campaign (--campaign ID) for its reach"
            ));
        }
        notes.push(
            "each figure carries its own noise, so overlap (de-duplicated reach minus the incremental reaches) carries theirs together".into(),
        );
    }
    if campaign.is_some() && campaigns.is_empty() {
        notes.push(
            "the campaign's reach was not released: too few people were reached (under the threshold or the DP group selection)".into(),
        );
    }
    notes.push(
        "frequency counts impressions on all media parties together (clicks not counted); buckets not shown were left out (too few people) or empty".into(),
    );
    Ok(ReachReport {
        parties: parties.to_vec(),
        coverage: ReachCoverage::from_view(info, parties),
        campaigns,
        suppressed,
        notes,
        released: log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_has_the_columns_the_rules_name() {
        let parties = vec!["social".to_string(), "news".to_string()];
        let sql = reach_sql(&parties);
        for (c, _) in reach_columns(&parties) {
            assert!(sql.contains(&c), "{c}");
        }
        assert!(sql.contains("only_news"));
        assert!(check_parties(&["so cial".to_string()]).is_err());
        assert!(check_parties(&[]).is_err());
    }
}

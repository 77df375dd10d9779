//! Asking the engine for released aggregates and reading its answers.

use jingteng_engine::{Answer, Budget, Engine, ReleaseNote};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// Which parties play the media and the retail role (their tables are
/// `MEDIA.users`, `MEDIA.campaigns`, `MEDIA.exposures`, `MEDIA.holdout`,
/// `RETAIL.users`, `RETAIL.orders`, as `jingteng synth` writes them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sources {
    /// The media party (`social`).
    pub media: String,
    /// The retailer (`retail`).
    pub retail: String,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            media: "social".into(),
            retail: "retail".into(),
        }
    }
}

impl Sources {
    /// Checks the names are plain identifiers (they are written into SQL).
    pub fn new(media: &str, retail: &str) -> Result<Self> {
        for n in [media, retail] {
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(Error::Input(format!(
                    "party name {n:?}: lower-case letters, digits and _ only"
                )));
            }
        }
        Ok(Self {
            media: media.into(),
            retail: retail.into(),
        })
    }

    pub(crate) fn t(&self, media: bool, table: &str) -> String {
        format!("{}.{table}", if media { &self.media } else { &self.retail })
    }
}

/// A campaign id, checked to be a plain token (it is written into SQL).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct CampaignId(String);

impl CampaignId {
    /// Parses an id: letters, digits, `_` and `-`, at most 64 characters.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty()
            || s.len() > 64
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::Input(format!(
                "campaign id {s:?}: letters, digits, _ and - only (e.g. C01)"
            )));
        }
        Ok(Self(s.to_string()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `WHERE campaign_id = '…'` (or nothing), with `prefix` the column's qualifier.
    pub(crate) fn filter(id: Option<&Self>, prefix: &str) -> String {
        id.map_or(String::new(), |c| {
            format!("WHERE {prefix}campaign_id = '{}'", c.0)
        })
    }
}

/// One query a report was built from, and how its answer was released.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Released {
    /// What the figures are.
    pub what: String,
    /// The SQL the engine checked and released.
    pub sql: String,
    /// How.
    pub release: ReleaseNote,
    /// Served from the answer cache (no budget spent).
    pub cached: bool,
    /// The analyst's budget afterwards (DP mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// Runs `sql` through the engine's check and release.
pub(crate) async fn ask(
    engine: &Engine,
    what: &str,
    sql: String,
    analyst: &str,
    log: &mut Vec<Released>,
) -> Result<Rows> {
    let answer = engine.query(&sql, analyst).await?;
    log.push(Released {
        what: what.into(),
        sql,
        release: answer.release.clone(),
        cached: answer.cached,
        budget: answer.budget.clone(),
    });
    Ok(Rows(answer))
}

/// A released answer, read by column name.
pub(crate) struct Rows(pub(crate) Answer);

impl Rows {
    pub(crate) fn col(&self, name: &str) -> Result<usize> {
        // An answer whose every group was left out has no batches, hence no column
        // names; no row will be indexed, so any index will do.
        if self.0.rows.is_empty() {
            return Ok(0);
        }
        self.0
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| Error::Internal(format!("released answer has no column {name}")))
    }

    pub(crate) fn rows(&self) -> &[Vec<Value>] {
        &self.0.rows
    }

    /// The noise scale on a column (0 when released exactly).
    pub(crate) fn noise_scale(&self, column: &str) -> f64 {
        self.0
            .release
            .noise
            .iter()
            .find(|n| n.column == column)
            .map_or(0.0, |n| n.scale)
    }

    pub(crate) fn is_dp(&self) -> bool {
        self.0.release.mode == "dp"
    }
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn int(v: &Value, what: &str) -> Result<i64> {
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.round() as i64))
            .ok_or_else(|| Error::Internal(format!("{what}: {n} is not a whole number"))),
        other => Err(Error::Internal(format!("{what}: {other} is not a number"))),
    }
}

pub(crate) fn float(v: &Value, what: &str) -> Result<f64> {
    match v {
        Value::Null => Ok(0.0),
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| Error::Internal(format!("{what}: {n} is not a number"))),
        other => Err(Error::Internal(format!("{what}: {other} is not a number"))),
    }
}

impl TryFrom<String> for CampaignId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

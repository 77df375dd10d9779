//! Audience definitions: a TOML file (or the same fields from command-line flags)
//! parsed into a [`Definition`] whose rules are already parsed; checking it against the
//! collaboration's policy happens in [`Definition::check`].
//!
//! ```toml
//! name = "hair-care-beauty"
//! description = "Bought hair care lately, into beauty, not yet an Aurora customer"
//! activate = "social"          # the media party that receives it, as its own user ids
//! include = [
//!   "retail.orders.category = 'hair_care' AND ts within 180 days",
//!   "social.users.interest = 'beauty'",
//! ]
//! exclude = ["brand.crm"]
//! min_size = 1000              # default 1,000
//! as_of = "2026-06-30"         # 'within N days' counts back from the end of this day
//!                              # (+08:00); default: now
//! refresh = "24h"              # optional: a networked host delivers it again this often
//! [lookalike]                  # optional: expand the audience (the seed)
//! size = 20000                 # media users added: the top N by score
//! holdout = 0.2                # share of the seed held out to measure precision
//! seed = 7                     # random seed of the split and the sampling
//! ```

use std::collections::BTreeSet;

use jingteng_engine::Policy;
use serde::{Deserialize, Serialize};

use crate::lookalike::LookalikeSettings;
use crate::rule::Rule;
use crate::{Error, Result};

/// The minimum audience size when neither the definition nor the caller sets one
/// (Tencent Ads insight and Google's YouTube lists want at least 1,000 users).
pub const DEFAULT_MIN_SIZE: u64 = 1_000;

/// The definition file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefinitionFile {
    /// Name: 1–64 lower-case letters, digits, `-` and `_` (it names files and the RTA
    /// campaign).
    pub name: String,
    /// What it is for, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The media party that receives the audience as its own user ids; only its users
    /// can be in it.
    pub activate: String,
    /// Rules a person must all match.
    #[serde(default)]
    pub include: Vec<String>,
    /// Rules a person must match none of.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Minimum size (default 1,000); a smaller audience is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<u64>,
    /// The day (`YYYY-MM-DD`, China time) `within N days` counts back from the end of;
    /// default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// How often the host of a networked collaboration delivers the next version on its
    /// own (`"90m"`, `"24h"`, `"7d"`: a whole number of minutes, hours or days, from 1
    /// minute to 365 days); default: only on demand. See [`Refresh`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// Look-alike expansion of the audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookalike: Option<LookalikeSection>,
}

/// `[lookalike]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookalikeSection {
    /// Media users to add: the top N by the model's score.
    pub size: u64,
    /// Share of the seed held out to measure precision (default 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<f64>,
    /// Random seed of the split and the negative sample (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// A parsed definition.
#[derive(Debug, Clone)]
pub struct Definition {
    file: DefinitionFile,
    include: Vec<Rule>,
    exclude: Vec<Rule>,
    as_of: Option<i64>,
    refresh: Option<Refresh>,
    lookalike: Option<LookalikeSettings>,
}

/// How often an audience is delivered again on its own: a whole number of minutes,
/// hours or days between [`Refresh::MIN`] and [`Refresh::MAX`]. Only a parsed
/// `refresh = "…"` makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Refresh {
    seconds: u64,
}

impl Refresh {
    /// The shortest interval: 1 minute (each refresh may spend ε from the budget of the
    /// member that defined the audience, so a shorter one would mostly drain it).
    pub const MIN: Refresh = Refresh { seconds: 60 };
    /// The longest interval: 365 days.
    pub const MAX: Refresh = Refresh {
        seconds: 365 * 86_400,
    };

    /// Parses `"<n>m"`, `"<n>h"` or `"<n>d"` (a whole number and its unit).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::Definition(format!(
                "refresh = {text:?}: give a whole number of minutes, hours or days with its unit \
                 (m, h or d), e.g. \"90m\", \"24h\" or \"7d\", from 1 minute to 365 days"
            ))
        };
        let t = text.trim();
        let unit = t.chars().last().ok_or_else(bad)?;
        let per = match unit {
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let digits = &t[..t.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let seconds = n.checked_mul(per).ok_or_else(bad)?;
        if !(Self::MIN.seconds..=Self::MAX.seconds).contains(&seconds) {
            return Err(bad());
        }
        Ok(Self { seconds })
    }

    /// The interval in seconds.
    pub fn seconds(&self) -> u64 {
        self.seconds
    }

    /// The interval in milliseconds.
    pub fn millis(&self) -> i64 {
        // At most 365 days: far inside i64.
        (self.seconds * 1_000) as i64
    }
}

impl std::fmt::Display for Refresh {
    /// The largest whole unit: `"90m"`, `"24h"` is `"1d"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.seconds;
        if s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s.is_multiple_of(3_600) {
            write!(f, "{}h", s / 3_600)
        } else {
            write!(f, "{}m", s / 60)
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The end of a `YYYY-MM-DD` day in China time (+08:00), as Unix seconds.
fn end_of_day(text: &str) -> Option<i64> {
    let mut parts = text.trim().split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > days_in[(m - 1) as usize] {
        return None;
    }
    Some((days_from_civil(y, m, d) + 1) * 86_400 - 8 * 3_600)
}

/// The size class said instead of an exact size: "fewer than MIN" below the minimum,
/// otherwise a bucket of a 1–5–10 ladder ("1,000–4,999", "5,000–9,999", …).
pub fn size_class(size: u64, min: u64) -> String {
    if size < min {
        return format!("fewer than {}", thousands(min));
    }
    let mut low = 1u64;
    loop {
        for step in [1u64, 5] {
            let lo = low * step;
            let hi = if step == 1 { low * 5 } else { low * 10 };
            if size >= lo && size < hi {
                return format!("{}–{}", thousands(lo.max(min)), thousands(hi - 1));
            }
        }
        match low.checked_mul(10) {
            Some(l) => low = l,
            None => return format!("at least {}", thousands(low)),
        }
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Definition {
    /// Parses a definition file's text.
    pub fn parse_toml(text: &str) -> Result<Self> {
        let file: DefinitionFile =
            toml::from_str(text).map_err(|e| Error::Definition(e.to_string()))?;
        Self::from_file(file)
    }

    /// Checks a definition's shape and parses its rules.
    pub fn from_file(file: DefinitionFile) -> Result<Self> {
        let bad = |m: String| Err(Error::Definition(m));
        let name_ok = (1..=64).contains(&file.name.len())
            && file
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return bad(format!(
                "name {:?}: use 1–64 lower-case letters, digits, - and _",
                file.name
            ));
        }
        if file.include.is_empty() && file.exclude.is_empty() {
            return bad(format!(
                "audience {:?} has no rules; give at least one include or exclude rule",
                file.name
            ));
        }
        if file.min_size == Some(0) {
            return bad("min_size is 0; give at least 1".into());
        }
        let include = file
            .include
            .iter()
            .map(|r| Rule::parse(r))
            .collect::<Result<Vec<_>>>()?;
        let exclude = file
            .exclude
            .iter()
            .map(|r| Rule::parse(r))
            .collect::<Result<Vec<_>>>()?;
        let as_of = match &file.as_of {
            None => None,
            Some(d) => Some(end_of_day(d).ok_or_else(|| {
                Error::Definition(format!("as_of {d:?} is not a date (YYYY-MM-DD)"))
            })?),
        };
        let refresh = file.refresh.as_deref().map(Refresh::parse).transpose()?;
        let lookalike = match &file.lookalike {
            None => None,
            Some(l) => {
                let holdout = l.holdout.unwrap_or(0.2);
                if !(holdout > 0.0 && holdout < 0.9) {
                    return bad(format!(
                        "lookalike.holdout is {holdout}; give a share above 0 and below 0.9"
                    ));
                }
                if l.size == 0 {
                    return bad("lookalike.size is 0; give the number of media users to add".into());
                }
                Some(LookalikeSettings {
                    size: l.size,
                    holdout,
                    seed: l.seed.unwrap_or(7),
                })
            }
        };
        Ok(Self {
            file,
            include,
            exclude,
            as_of,
            refresh,
            lookalike,
        })
    }

    /// The definition as TOML (what is stored).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(&self.file).map_err(|e| Error::Internal(format!("definition TOML: {e}")))
    }

    /// The file as written.
    pub fn file(&self) -> &DefinitionFile {
        &self.file
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// The activation (media) party.
    pub fn activate(&self) -> &str {
        &self.file.activate
    }

    /// Include rules.
    pub fn include(&self) -> &[Rule] {
        &self.include
    }

    /// Exclude rules.
    pub fn exclude(&self) -> &[Rule] {
        &self.exclude
    }

    /// The minimum size: the definition's, else `default`.
    pub fn min_size(&self, default: u64) -> u64 {
        self.file.min_size.unwrap_or(default)
    }

    /// Sets the minimum size (a command-line flag over the file).
    pub fn set_min_size(&mut self, min: u64) -> Result<()> {
        if min == 0 {
            return Err(Error::Definition("min_size is 0; give at least 1".into()));
        }
        self.file.min_size = Some(min);
        Ok(())
    }

    /// How often a networked host delivers it again on its own; `None`: on demand only.
    pub fn refresh(&self) -> Option<Refresh> {
        self.refresh
    }

    /// The look-alike settings.
    pub fn lookalike(&self) -> Option<&LookalikeSettings> {
        self.lookalike.as_ref()
    }

    /// The instant `within N days` counts back from: the end of `as_of`, else `now`.
    pub fn as_of(&self, now: i64) -> i64 {
        self.as_of.unwrap_or(now)
    }

    /// Every table the audience reads: its rules' tables and the activation party's.
    pub fn tables(&self, policy: &Policy) -> BTreeSet<String> {
        let mut t: BTreeSet<String> = self
            .include
            .iter()
            .chain(&self.exclude)
            .map(|r| r.table().to_string())
            .collect();
        if let Ok(id) = identity_table(policy, self.activate()) {
            t.insert(id);
        }
        t
    }

    /// Checks every rule against the owners' rules and that the activation party
    /// exists.
    pub fn check(&self, policy: &Policy) -> Result<()> {
        identity_table(policy, self.activate())?;
        for r in self.include.iter().chain(&self.exclude) {
            r.check(policy)?;
        }
        Ok(())
    }
}

/// The activation party's table with one row per person (its users).
pub(crate) fn identity_table(policy: &Policy, party: &str) -> Result<String> {
    policy
        .tables
        .values()
        .find(|t| t.party == party && t.one_row_per_person)
        .map(|t| t.qualified())
        .ok_or_else(|| {
            let parties: BTreeSet<&str> =
                policy.tables.values().map(|t| t.party.as_str()).collect();
            Error::Definition(format!(
                "activate = {party:?} is not a party of the collaboration (parties: {})",
                parties.into_iter().collect::<Vec<_>>().join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_never_say_the_size() {
        assert_eq!(size_class(0, 1000), "fewer than 1,000");
        assert_eq!(size_class(999, 1000), "fewer than 1,000");
        assert_eq!(size_class(1000, 1000), "1,000–4,999");
        assert_eq!(size_class(4999, 1000), "1,000–4,999");
        assert_eq!(size_class(5000, 1000), "5,000–9,999");
        assert_eq!(size_class(123_456, 1000), "100,000–499,999");
        assert_eq!(size_class(2500, 2000), "2,000–4,999");
    }

    #[test]
    fn dates_end_in_china_time() {
        // 2026-06-30 ends at 2026-07-01T00:00+08:00 = 2026-06-30T16:00Z.
        assert_eq!(end_of_day("2026-06-30"), Some(1_782_835_200));
        assert_eq!(end_of_day("2026-02-29"), None);
        assert_eq!(end_of_day("2024-02-29").map(|s| s % 86_400), Some(57_600));
        assert_eq!(end_of_day("30/06/2026"), None);
    }

    #[test]
    fn definitions_parse_and_round_trip() {
        let text = r#"
name = "hair-beauty"
activate = "social"
include = ["retail.orders.category = 'hair_care' AND ts within 180 days"]
exclude = ["brand.crm"]
as_of = "2026-06-30"
[lookalike]
size = 5000
"#;
        let d = Definition::parse_toml(text).unwrap();
        assert_eq!(d.min_size(DEFAULT_MIN_SIZE), 1000);
        assert_eq!(d.lookalike().unwrap().holdout, 0.2);
        let again = Definition::parse_toml(&d.to_toml().unwrap()).unwrap();
        assert_eq!(again.file(), d.file());
        let e = |t: &str| Definition::parse_toml(t).unwrap_err().to_string();
        assert!(e("name = \"A b\"\nactivate = \"s\"\ninclude = [\"a.b\"]").contains("lower-case"));
        assert!(e("name = \"a\"\nactivate = \"s\"").contains("no rules"));
        assert!(
            e("name = \"a\"\nactivate = \"s\"\ninclude = [\"a.b\"]\ncolour = 1").contains("colour")
        );
    }

    #[test]
    fn refresh_intervals_parse_within_bounds() {
        let ok = |t: &str| Refresh::parse(t).unwrap().seconds();
        assert_eq!(ok("1m"), 60);
        assert_eq!(ok("90m"), 5_400);
        assert_eq!(ok("24h"), 86_400);
        assert_eq!(ok(" 7d "), 604_800);
        assert_eq!(ok("365d"), 365 * 86_400);
        for bad in [
            "",
            "0m",
            "30s",
            "1",
            "h",
            "1.5h",
            "-1h",
            "+1h",
            "1w",
            "366d",
            "8761h",
            "1 h",
            "1H",
            "99999999999999999999d",
        ] {
            let e = Refresh::parse(bad).unwrap_err().to_string();
            assert!(e.contains("from 1 minute to 365 days"), "{bad:?}: {e}");
        }
        assert_eq!(Refresh::parse("24h").unwrap().to_string(), "1d");
        assert_eq!(Refresh::parse("90m").unwrap().to_string(), "90m");
        assert_eq!(Refresh::parse("120m").unwrap().to_string(), "2h");
        let text = "name = \"a\"\nactivate = \"s\"\ninclude = [\"a.b\"]\nrefresh = \"12h\"";
        let d = Definition::parse_toml(text).unwrap();
        assert_eq!(d.refresh().map(|r| r.seconds()), Some(43_200));
        assert!(d.to_toml().unwrap().contains("refresh = \"12h\""));
        let e = Definition::parse_toml(&text.replace("12h", "10s")).unwrap_err();
        assert!(e.to_string().contains("refresh = \"10s\""), "{e}");
    }
}

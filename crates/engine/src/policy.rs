//! The rules each dataset's owner sets in the contract, gathered per table of the
//! joined view, and how they combine when a query reads several tables (the most
//! restrictive wins).

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use std::collections::BTreeMap;

use jingteng_psi::{Collaboration, Privacy, ReleaseMode};
use serde::Serialize;

/// The column of every joined table that holds the pseudonymous person id.
pub const PERSON: &str = "person";

/// What a column of the joined view may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The pseudonymous person id: joins, `COUNT(DISTINCT person)`, the GROUP BY of a
    /// per-person subquery; never output, filtered on or computed with.
    Person,
    /// Grouping and filtering.
    Dimension,
    /// Aggregating (with the allowed aggregates), filtering.
    Measure,
    /// Event times: grouping (by day, month…) and filtering.
    Timestamp,
}

/// The time zone of every timestamp in a joined view (see [`Role::data_type`]).
pub const VIEW_TIME_ZONE: &str = "+08:00";

impl Role {
    /// The column's type in every joined view, local or networked, and in a node's
    /// imported tables: the person id `UInt64`, dimensions text, measures 64-bit
    /// integers, timestamps milliseconds shown in China Standard Time (+08:00, the zone
    /// in which `date_trunc('month', ts)` and days fall). One typing everywhere, so that
    /// a query means the same in local mode and at a host (a source's `Int32` dimension
    /// or seconds-precision UTC timestamp is cast to it; the instant is unchanged).
    pub fn data_type(self) -> DataType {
        match self {
            Role::Person => DataType::UInt64,
            Role::Dimension => DataType::Utf8,
            Role::Measure => DataType::Int64,
            Role::Timestamp => {
                DataType::Timestamp(TimeUnit::Millisecond, Some(VIEW_TIME_ZONE.into()))
            }
        }
    }
}

/// One column's rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnRule {
    /// Its role.
    pub role: Role,
    /// Value bounds (measures).
    pub bounds: Option<(i64, i64)>,
    /// Allowed aggregates (measures).
    pub aggregates: Vec<String>,
}

/// One table of the joined view.
#[derive(Debug, Clone, Serialize)]
pub struct TableRule {
    /// Owner.
    pub party: String,
    /// Table name within the owner.
    pub table: String,
    /// Whether rows are about people (the table has a `person` column).
    pub about_people: bool,
    /// Whether each person has at most one row (the party's identity table).
    pub one_row_per_person: bool,
    /// Columns in the view, by name.
    pub columns: BTreeMap<String, ColumnRule>,
    /// Columns of the source that are not in the view (identifiers, record ids,
    /// undeclared columns), so a query naming one is told why.
    pub withheld: BTreeMap<String, &'static str>,
    /// The owner's release settings.
    pub privacy: Privacy,
}

impl TableRule {
    /// `party.table`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.party, self.table)
    }
}

/// Every table's rules, keyed by `party.table`.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    /// The tables.
    pub tables: BTreeMap<String, TableRule>,
}

impl Policy {
    /// The rules a collaboration's spec declares.
    pub fn from_collab(collab: &Collaboration) -> Self {
        let mut tables = BTreeMap::new();
        for party in collab.parties() {
            for (t, identity) in std::iter::once((&party.identity, true))
                .chain(party.tables.iter().map(|t| (t, false)))
            {
                let mut columns = BTreeMap::new();
                let about_people = t.record_id.is_some();
                if about_people {
                    columns.insert(
                        PERSON.to_string(),
                        ColumnRule {
                            role: Role::Person,
                            bounds: None,
                            aggregates: Vec::new(),
                        },
                    );
                }
                let plain = |role| ColumnRule {
                    role,
                    bounds: None,
                    aggregates: Vec::new(),
                };
                for d in &t.dimensions {
                    columns.insert(d.clone(), plain(Role::Dimension));
                }
                for d in &t.timestamps {
                    columns.insert(d.clone(), plain(Role::Timestamp));
                }
                for m in &t.measures {
                    columns.insert(
                        m.clone(),
                        ColumnRule {
                            role: Role::Measure,
                            bounds: t.bounds.get(m).copied(),
                            aggregates: t.aggregates.get(m).cloned().unwrap_or_default(),
                        },
                    );
                }
                let mut withheld = BTreeMap::new();
                if let Some(r) = &t.record_id {
                    withheld.insert(r.clone(), "the owner's record id");
                }
                for i in &t.identifiers {
                    withheld.insert(i.column.clone(), "an identifier");
                    if let Some(jingteng_psi::DeviceKinds::Column(c)) = &i.devices {
                        withheld.insert(c.clone(), "an identifier's type column");
                    }
                }
                let rule = TableRule {
                    party: party.name.clone(),
                    table: t.name.clone(),
                    about_people,
                    one_row_per_person: identity,
                    columns,
                    withheld,
                    privacy: party.privacy,
                };
                tables.insert(rule.qualified(), rule);
            }
        }
        Self { tables }
    }

    /// The most restrictive combination of the settings of `tables` (DP if any is DP,
    /// the largest threshold, the smallest ε, budget and contribution bounds).
    pub fn combined<'a>(&self, tables: impl IntoIterator<Item = &'a str>) -> Privacy {
        let mut out: Option<Privacy> = None;
        for name in tables {
            let Some(t) = self.tables.get(name) else {
                continue;
            };
            let p = t.privacy;
            out = Some(match out {
                None => p,
                Some(o) => Privacy {
                    mode: if o.mode == ReleaseMode::Dp || p.mode == ReleaseMode::Dp {
                        ReleaseMode::Dp
                    } else {
                        ReleaseMode::Threshold
                    },
                    min_people: o.min_people.max(p.min_people),
                    epsilon: o.epsilon.min(p.epsilon),
                    budget: o.budget.min(p.budget),
                    max_groups_per_person: o.max_groups_per_person.min(p.max_groups_per_person),
                    max_rows_per_person: o.max_rows_per_person.min(p.max_rows_per_person),
                },
            });
        }
        out.unwrap_or_default()
    }

    /// The budget that applies to an analyst across the whole collaboration: the
    /// smallest any DP party sets.
    pub fn budget(&self) -> f64 {
        self.combined(self.tables.keys().map(String::as_str)).budget
    }

    /// Names the table and reason when `column` is withheld from the view somewhere.
    pub fn withheld(&self, column: &str) -> Option<(String, &'static str)> {
        self.tables
            .values()
            .find_map(|t| t.withheld.get(column).map(|why| (t.qualified(), *why)))
    }
}

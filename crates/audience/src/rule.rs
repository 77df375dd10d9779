//! Audience rules: one condition over one table of the joined view, written for people
//! (`retail.orders.category = 'hair_care' AND ts within 180 days`), parsed into a typed
//! tree, checked against the owners' rules ([`jingteng_engine::Policy`]) and compiled
//! into the SQL that trusted code runs at the host to find the people it selects.
//!
//! Grammar (keywords in any case):
//!
//! ```text
//! rule      = table | expr                 table = party.table ("has a record there")
//! expr      = and { OR and }
//! and       = not { AND not }
//! not       = NOT not | "(" expr ")" | condition
//! condition = column op literal            op = "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
//!           | column [NOT] IN "(" literal { "," literal } ")"
//!           | column CONTAINS 'text'        an item of a ';'-separated list
//!           | column WITHIN n DAYS         a timestamp in the n days before `as_of`
//! column    = party.table.column | column  (bare: the rule's table)
//! literal   = 'text' | number
//! ```
//!
//! A person matches a rule when at least one row of the table about them satisfies the
//! whole condition (so `category = 'hair_care' AND ts within 180 days` is one order).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use jingteng_engine::Policy;
use jingteng_engine::policy::Role;

use crate::{Error, Result};

/// A literal value in a condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Text(String),
    Int(i64),
    Float(f64),
}

impl Lit {
    fn sql(&self) -> String {
        match self {
            Lit::Text(s) => quote_text(s),
            Lit::Int(i) => i.to_string(),
            Lit::Float(f) => format!("{f:?}"),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A condition tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Cmp(String, Op, Lit),
    In(String, Vec<Lit>, bool),
    Contains(String, String),
    Within(String, u32),
}

/// A parsed rule: the table it is about and its condition (none: "has a record there").
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    text: String,
    table: String,
    cond: Option<Cond>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Text(String),
    Num(String),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

fn tokens(text: &str) -> std::result::Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("a text literal is not closed with '".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Text(s));
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2;
            }
            '<' => {
                let (op, n) = match chars.get(i + 1) {
                    Some('=') => (Op::Le, 2),
                    Some('>') => (Op::Ne, 2),
                    _ => (Op::Lt, 1),
                };
                out.push(Tok::Op(op));
                i += n;
            }
            '>' => {
                let (op, n) = match chars.get(i + 1) {
                    Some('=') => (Op::Ge, 2),
                    _ => (Op::Gt, 1),
                };
                out.push(Tok::Op(op));
                i += n;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_digit() || *c == '.')
                {
                    i += 1;
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    tables: BTreeSet<String>,
}

fn is_kw(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expr(&mut self) -> std::result::Result<Cond, String> {
        let mut left = self.and()?;
        while is_kw(self.peek(), "or") {
            self.pos += 1;
            let right = self.and()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> std::result::Result<Cond, String> {
        let mut left = self.not()?;
        while is_kw(self.peek(), "and") {
            self.pos += 1;
            let right = self.not()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> std::result::Result<Cond, String> {
        if is_kw(self.peek(), "not") {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.expr()?;
            if self.next() != Some(Tok::RParen) {
                return Err("a '(' is not closed".into());
            }
            return Ok(e);
        }
        self.condition()
    }

    fn column(&mut self) -> std::result::Result<String, String> {
        match self.next() {
            Some(Tok::Ident(name)) => {
                let parts: Vec<&str> = name.split('.').collect();
                match parts.as_slice() {
                    [c] if !is_keyword(c) => Ok((*c).to_string()),
                    [p, t, c] => {
                        self.tables.insert(format!("{p}.{t}"));
                        Ok((*c).to_string())
                    }
                    _ => Err(format!(
                        "{name:?} is not a column: write party.table.column, or the column alone once the table is named"
                    )),
                }
            }
            other => Err(format!("expected a column, found {}", show(other.as_ref()))),
        }
    }

    fn literal(&mut self) -> std::result::Result<Lit, String> {
        match self.next() {
            Some(Tok::Text(s)) => Ok(Lit::Text(s)),
            Some(Tok::Num(n)) => {
                if let Ok(i) = n.parse::<i64>() {
                    Ok(Lit::Int(i))
                } else {
                    n.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(Lit::Float)
                        .ok_or_else(|| format!("{n:?} is not a number"))
                }
            }
            other => Err(format!(
                "expected a value ('text' or a number), found {}",
                show(other.as_ref())
            )),
        }
    }

    fn condition(&mut self) -> std::result::Result<Cond, String> {
        let column = self.column()?;
        match self.next() {
            Some(Tok::Op(op)) => Ok(Cond::Cmp(column, op, self.literal()?)),
            Some(Tok::Ident(k)) if k.eq_ignore_ascii_case("contains") => match self.next() {
                Some(Tok::Text(s)) => Ok(Cond::Contains(column, s)),
                other => Err(format!(
                    "contains takes a 'text' value, found {}",
                    show(other.as_ref())
                )),
            },
            Some(Tok::Ident(k)) if k.eq_ignore_ascii_case("within") => {
                let days = match self.next() {
                    Some(Tok::Num(n)) => n
                        .parse::<u32>()
                        .ok()
                        .filter(|d| (1..=36_500).contains(d))
                        .ok_or_else(|| format!("within {n} days: give 1 to 36500 whole days"))?,
                    other => {
                        return Err(format!(
                            "within takes a number of days, found {}",
                            show(other.as_ref())
                        ));
                    }
                };
                if !is_kw(self.peek(), "days") && !is_kw(self.peek(), "day") {
                    return Err(format!("write 'within {days} days'"));
                }
                self.pos += 1;
                Ok(Cond::Within(column, days))
            }
            Some(Tok::Ident(k))
                if k.eq_ignore_ascii_case("in") || k.eq_ignore_ascii_case("not") =>
            {
                let negated = k.eq_ignore_ascii_case("not");
                if negated
                    && !matches!(self.next(), Some(Tok::Ident(i)) if i.eq_ignore_ascii_case("in"))
                {
                    return Err(format!("after {column} NOT, expected IN"));
                }
                if self.next() != Some(Tok::LParen) {
                    return Err("IN takes a list in parentheses: IN ('a', 'b')".into());
                }
                let mut values = vec![self.literal()?];
                loop {
                    match self.next() {
                        Some(Tok::Comma) => values.push(self.literal()?),
                        Some(Tok::RParen) => break,
                        other => {
                            return Err(format!(
                                "expected ',' or ')' in the IN list, found {}",
                                show(other.as_ref())
                            ));
                        }
                    }
                }
                Ok(Cond::In(column, values, negated))
            }
            other => Err(format!(
                "after {column}, expected =, !=, <, <=, >, >=, IN, CONTAINS or WITHIN, found {}",
                show(other.as_ref())
            )),
        }
    }
}

fn is_keyword(s: &str) -> bool {
    [
        "and", "or", "not", "in", "contains", "within", "days", "day",
    ]
    .iter()
    .any(|k| s.eq_ignore_ascii_case(k))
}

fn show(t: Option<&Tok>) -> String {
    match t {
        None => "the end of the rule".into(),
        Some(Tok::Ident(s)) => format!("{s:?}"),
        Some(Tok::Text(s)) => format!("'{s}'"),
        Some(Tok::Num(n)) => n.clone(),
        Some(Tok::Op(o)) => format!("{:?}", o.sql()),
        Some(Tok::LParen) => "'('".into(),
        Some(Tok::RParen) => "')'".into(),
        Some(Tok::Comma) => "','".into(),
    }
}

fn quote_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Rule {
    /// Parses a rule; errors say what is wrong and where (the caller names the rule).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |message: String| Error::Rule {
            rule: text.to_string(),
            message,
        };
        let toks = tokens(text).map_err(bad)?;
        if let [Tok::Ident(name)] = toks.as_slice()
            && name.split('.').count() == 2
            && !name.split('.').any(str::is_empty)
        {
            return Ok(Self {
                text: text.trim().to_string(),
                table: name.clone(),
                cond: None,
            });
        }
        if toks.is_empty() {
            return Err(bad("the rule is empty".into()));
        }
        let mut p = Parser {
            toks,
            pos: 0,
            tables: BTreeSet::new(),
        };
        let cond = p.expr().map_err(bad)?;
        if p.pos < p.toks.len() {
            return Err(bad(format!(
                "unexpected {} after the condition (join conditions with AND or OR)",
                show(p.peek())
            )));
        }
        let mut tables = p.tables.into_iter();
        let table = match (tables.next(), tables.next()) {
            (Some(t), None) => t,
            (None, _) => {
                return Err(bad(
                    "name the table: write the first column as party.table.column".into(),
                ));
            }
            (Some(a), Some(b)) => {
                return Err(bad(format!(
                    "a rule is about one table, this one names {a} and {b}; write one include or exclude rule per table (a person must match every include rule)"
                )));
            }
        };
        Ok(Self {
            text: text.trim().to_string(),
            table,
            cond: Some(cond),
        })
    }

    /// The rule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The table it is about, `party.table`.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The party that owns the table.
    pub fn party(&self) -> &str {
        self.table.split('.').next().unwrap_or_default()
    }

    /// Checks the rule against the owners' rules: the table must be about people, every
    /// column one the owner allowed (a dimension, measure or timestamp; never the
    /// person id, an identifier or a record id); `within` takes a timestamp and
    /// `contains` a dimension.
    pub fn check(&self, policy: &Policy) -> Result<()> {
        let refuse = |rule: &'static str, message: String| Error::RuleRefused {
            rule_text: self.text.clone(),
            policy_rule: rule,
            message,
        };
        let Some(t) = policy.tables.get(&self.table) else {
            return Err(Error::Rule {
                rule: self.text.clone(),
                message: format!(
                    "no table {} in the collaboration (tables: {})",
                    self.table,
                    policy.tables.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        };
        if !t.about_people {
            return Err(refuse(
                "not-about-people",
                format!(
                    "{} is not about people (it has no record id), so it cannot select anyone",
                    self.table
                ),
            ));
        }
        let mut cols = Vec::new();
        if let Some(c) = &self.cond {
            columns(c, &mut cols);
        }
        for (name, usage) in cols {
            match t.columns.get(name) {
                Some(r) if r.role == Role::Person => {
                    return Err(refuse(
                        "join-key",
                        format!("{name} is the person id; a rule may not filter on it"),
                    ));
                }
                Some(r) => match (usage, r.role) {
                    (Usage::Within, Role::Timestamp) | (Usage::Plain, _) => {}
                    (Usage::Contains, Role::Dimension) => {}
                    (Usage::Within, _) => {
                        return Err(Error::Rule {
                            rule: self.text.clone(),
                            message: format!(
                                "{name} is not a timestamp of {}; 'within N days' takes one of: {}",
                                self.table,
                                names(t, Role::Timestamp)
                            ),
                        });
                    }
                    (Usage::Contains, _) => {
                        return Err(Error::Rule {
                            rule: self.text.clone(),
                            message: format!(
                                "{name} is not a dimension of {}; 'contains' takes one of: {}",
                                self.table,
                                names(t, Role::Dimension)
                            ),
                        });
                    }
                },
                None => {
                    if let Some(why) = t.withheld.get(name) {
                        return Err(refuse(
                            "identifier",
                            format!(
                                "{name} is {why} of {}; identifiers and record ids never enter the joined view",
                                self.table
                            ),
                        ));
                    }
                    return Err(Error::Rule {
                        rule: self.text.clone(),
                        message: format!(
                            "{} has no allowed column {name:?}; its owner allows: {}",
                            self.table,
                            t.columns
                                .iter()
                                .filter(|(_, r)| r.role != Role::Person)
                                .map(|(c, _)| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The SQL that lists the people the rule selects, `as_of` (Unix seconds) being
    /// the instant `within N days` counts back from. Only for trusted code at the host:
    /// it lists people, which no analyst may run.
    pub fn sql(&self, as_of: i64) -> String {
        let (party, table) = self.table.split_once('.').unwrap_or((&self.table, ""));
        let mut sql = format!(
            "SELECT DISTINCT person FROM {}.{}",
            quote_ident(party),
            quote_ident(table)
        );
        if let Some(c) = &self.cond {
            let _ = write!(sql, " WHERE {}", cond_sql(c, as_of));
        }
        sql
    }
}

#[derive(Clone, Copy)]
enum Usage {
    Plain,
    Contains,
    Within,
}

fn columns<'a>(c: &'a Cond, out: &mut Vec<(&'a str, Usage)>) {
    match c {
        Cond::And(a, b) | Cond::Or(a, b) => {
            columns(a, out);
            columns(b, out);
        }
        Cond::Not(a) => columns(a, out),
        Cond::Cmp(col, ..) | Cond::In(col, ..) => out.push((col, Usage::Plain)),
        Cond::Contains(col, _) => out.push((col, Usage::Contains)),
        Cond::Within(col, _) => out.push((col, Usage::Within)),
    }
}

fn names(t: &jingteng_engine::policy::TableRule, role: Role) -> String {
    let v: Vec<&str> = t
        .columns
        .iter()
        .filter(|(_, r)| r.role == role)
        .map(|(c, _)| c.as_str())
        .collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

fn cond_sql(c: &Cond, as_of: i64) -> String {
    match c {
        Cond::And(a, b) => format!("({} AND {})", cond_sql(a, as_of), cond_sql(b, as_of)),
        Cond::Or(a, b) => format!("({} OR {})", cond_sql(a, as_of), cond_sql(b, as_of)),
        Cond::Not(a) => format!("(NOT {})", cond_sql(a, as_of)),
        Cond::Cmp(col, op, lit) => format!("{} {} {}", quote_ident(col), op.sql(), lit.sql()),
        Cond::In(col, values, negated) => format!(
            "{} {}IN ({})",
            quote_ident(col),
            if *negated { "NOT " } else { "" },
            values.iter().map(Lit::sql).collect::<Vec<_>>().join(", ")
        ),
        Cond::Contains(col, v) => format!(
            "strpos(concat(';', CAST({} AS VARCHAR), ';'), {}) > 0",
            quote_ident(col),
            quote_text(&format!(";{v};"))
        ),
        Cond::Within(col, days) => {
            let from = as_of - i64::from(*days) * 86_400;
            format!(
                "(to_unixtime({c}) >= {from} AND to_unixtime({c}) < {as_of})",
                c = quote_ident(col)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(text: &str) -> Cond {
        Rule::parse(text).unwrap().cond.unwrap()
    }

    #[test]
    fn rules_parse_with_precedence_and_one_table() {
        let r = Rule::parse("retail.orders.category = 'hair_care' AND ts within 180 days").unwrap();
        assert_eq!(r.table(), "retail.orders");
        assert_eq!(
            r.sql(1_000_000_000),
            "SELECT DISTINCT person FROM \"retail\".\"orders\" WHERE (\"category\" = 'hair_care' AND (to_unixtime(\"ts\") >= 984448000 AND to_unixtime(\"ts\") < 1000000000))"
        );
        assert_eq!(
            cond("a.b.x = 1 OR x = 2 AND NOT x = 3"),
            Cond::Or(
                Box::new(Cond::Cmp("x".into(), Op::Eq, Lit::Int(1))),
                Box::new(Cond::And(
                    Box::new(Cond::Cmp("x".into(), Op::Eq, Lit::Int(2))),
                    Box::new(Cond::Not(Box::new(Cond::Cmp(
                        "x".into(),
                        Op::Eq,
                        Lit::Int(3)
                    )))),
                )),
            )
        );
        assert_eq!(
            cond("s.u.interest NOT IN ('a', 'it''s')"),
            Cond::In(
                "interest".into(),
                vec![Lit::Text("a".into()), Lit::Text("it's".into())],
                true
            )
        );
        let only = Rule::parse(" brand.crm ").unwrap();
        assert_eq!((only.table(), only.cond.is_none()), ("brand.crm", true));
        assert_eq!(only.sql(0), "SELECT DISTINCT person FROM \"brand\".\"crm\"");
        // Text is quoted, never spliced.
        let r = Rule::parse("a.b.c = 'x'' OR 1=1 --'").unwrap();
        assert!(r.sql(0).ends_with("WHERE \"c\" = 'x'' OR 1=1 --'"));
    }

    #[test]
    fn mistakes_are_named() {
        let e = |t: &str| Rule::parse(t).unwrap_err().to_string();
        assert!(e("category = 'x'").contains("name the table"));
        assert!(e("a.b.c = 1 AND x.y.z = 2").contains("names a.b and x.y"));
        assert!(e("a.b.c = ").contains("expected a value"));
        assert!(e("a.b.c within 3 weeks").contains("within 3 days"));
        assert!(e("a.b.c = 'open").contains("not closed"));
        assert!(e("a.b.c = 1 2").contains("unexpected 2"));
        assert!(e("").contains("empty"));
    }
}

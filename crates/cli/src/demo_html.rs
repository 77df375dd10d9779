//! The demo's HTML report: `report.json` as one self-contained page (inline CSS and
//! SVG, no script, nothing fetched), readable offline and printable. English with
//! Chinese headings.

use std::fmt::Write as _;

use serde_json::Value;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as a table cell: integers with thousands separators, floats to two
/// decimals, `—` for null.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => grouped(i),
            None => n.as_f64().map_or_else(
                || n.to_string(),
                |f| {
                    if f.fract() == 0.0 && f.abs() < 1e15 {
                        grouped(f as i64)
                    } else {
                        format!("{f:.2}")
                    }
                },
            ),
        },
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

fn grouped(i: i64) -> String {
    let digits = i.unsigned_abs().to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if i < 0 { format!("-{out}") } else { out }
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "—".into(), |x| format!("{:+.1}%", x * 100.0))
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// A horizontal bar chart of (label, value) as inline SVG.
fn bars(out: &mut String, title: &str, data: &[(String, f64)]) {
    let max = data.iter().map(|d| d.1).fold(0.0_f64, f64::max);
    if data.is_empty() || max <= 0.0 {
        return;
    }
    let (w, row, left) = (640.0, 22.0, 140.0);
    let h = row * data.len() as f64 + 10.0;
    let _ = write!(
        out,
        r#"<figure><figcaption>{}</figcaption><svg role="img" aria-label="{}" viewBox="0 0 {w} {h}" width="{w}" height="{h}">"#,
        esc(title),
        esc(title)
    );
    for (i, (label, v)) in data.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let len = (w - left - 80.0) * v / max;
        let _ = write!(
            out,
            r##"<text x="{tx}" y="{ty}" text-anchor="end">{l}</text><rect x="{left}" y="{y}" width="{len:.1}" height="{bh}" fill="#3b6fb6"/><text x="{vx:.1}" y="{ty}">{v}</text>"##,
            tx = left - 6.0,
            ty = y + 13.0,
            l = esc(label),
            bh = row - 6.0,
            vx = left + len + 4.0,
            v = grouped(v.round() as i64),
        );
    }
    out.push_str("</svg></figure>");
}

/// Each campaign's relative lift with its 95% interval, and the truth as a red tick.
fn intervals(out: &mut String, campaigns: &[Value]) {
    let shown: Vec<&Value> = campaigns
        .iter()
        .filter(|c| c["relative_lift"].is_object())
        .collect();
    if shown.is_empty() {
        return;
    }
    let values = shown.iter().flat_map(|c| {
        let i = &c["relative_lift"];
        [
            i["low"].as_f64(),
            i["high"].as_f64(),
            c["truth_linked"]["relative_lift"].as_f64(),
        ]
    });
    // The axis spans the figures but at most −100% … +300%: a DP interval can be
    // thousands of percent wide, and would flatten every other one; longer whiskers
    // are cut at the edge.
    let (lo, hi) = values
        .flatten()
        .fold((0.0_f64, 0.0_f64), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = (lo.max(-1.0), hi.min(3.0));
    let span = (hi - lo).max(1e-9);
    let (w, row, left, right) = (640.0, 24.0, 80.0, 20.0);
    let h = row * shown.len() as f64 + 30.0;
    let x = |v: f64| left + (w - left - right) * (v.clamp(lo, hi) - lo) / span;
    let _ = write!(
        out,
        r##"<figure><figcaption>Relative lift and its 95% interval (blue, cut at −100% and +300%); truth for linked people (red) · 相对提升及95%区间</figcaption><svg role="img" aria-label="lift intervals" viewBox="0 0 {w} {h}" width="{w}" height="{h}"><line x1="{z:.1}" x2="{z:.1}" y1="0" y2="{zh}" stroke="#999" stroke-dasharray="3"/><text x="{z:.1}" y="{th}" text-anchor="middle">0%</text>"##,
        z = x(0.0),
        zh = h - 20.0,
        th = h - 6.0,
    );
    for (k, c) in shown.iter().enumerate() {
        let i = &c["relative_lift"];
        let y = k as f64 * row + 14.0;
        let (l, e, u) = (
            i["low"].as_f64().unwrap_or(0.0),
            i["estimate"].as_f64().unwrap_or(0.0),
            i["high"].as_f64().unwrap_or(0.0),
        );
        let _ = write!(
            out,
            r##"<text x="{tx}" y="{ty:.1}" text-anchor="end">{id}</text><line x1="{a:.1}" x2="{b:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#3b6fb6" stroke-width="3"/><circle cx="{m:.1}" cy="{y:.1}" r="4" fill="#3b6fb6"/>"##,
            tx = left - 6.0,
            ty = y + 4.0,
            id = esc(c["campaign_id"].as_str().unwrap_or("?")),
            a = x(l),
            b = x(u),
            m = x(e),
        );
        if let Some(t) = c["truth_linked"]["relative_lift"].as_f64() {
            let _ = write!(
                out,
                r##"<line x1="{t:.1}" x2="{t:.1}" y1="{a:.1}" y2="{b:.1}" stroke="#c0392b" stroke-width="2"/>"##,
                t = x(t),
                a = y - 8.0,
                b = y + 8.0,
            );
        }
    }
    out.push_str("</svg></figure>");
}

/// The report as one HTML page.
pub(crate) fn render(report: &Value) -> String {
    let empty = Vec::new();
    let arr = |v: &Value| v.as_array().unwrap_or(&empty).clone();
    let mut o = String::new();
    let collab = report["contract"]["collaboration"].as_str().unwrap_or("?");
    let _ = write!(
        o,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Jingteng demo report · {c}</title><style>
body{{font:14px/1.45 system-ui,"Noto Sans CJK SC","WenQuanYi Micro Hei",sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}}
h1{{font-size:1.6em}} h2{{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}}
table{{border-collapse:collapse;margin:.6em 0}} th,td{{border:1px solid #ddd;padding:.25em .6em;text-align:right}}
th{{background:#f4f6fa}} td:first-child,th:first-child{{text-align:left}}
figure{{margin:1em 0}} figcaption{{color:#555;margin-bottom:.3em}} svg text{{font-size:12px;fill:#333}}
.note{{color:#666}}
</style></head><body>"#,
        c = esc(collab)
    );
    let people = &report["world"]["people"];
    let _ = write!(
        o,
        "<h1>Jingteng demo report · 演示报告</h1><p>Collaboration <b>{}</b> over a synthetic world of {} people (seed {}, scale {}). Every figure about people below was released by the host's query engine under the contract's privacy rules; truth.json's figures are shown beside them for comparison.</p>",
        esc(collab),
        cell(&people["world"]),
        cell(&report["world"]["seed"]),
        cell(&report["world"]["scale"]),
    );

    // Match.
    o.push_str("<h2>Match · 匹配</h2>");
    let mut rows = Vec::new();
    for (party, node) in report["nodes"].as_object().into_iter().flatten() {
        rows.push(vec![
            esc(party),
            if node["host"] == true {
                "host".into()
            } else {
                "member".into()
            },
            cell(&people[party.as_str()]),
            cell(&node["imported"]["rows"]),
        ]);
    }
    table(
        &mut o,
        &["party", "role", "people", "records imported"],
        &rows,
    );
    let rows: Vec<Vec<String>> = report["match"]["overlap"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(set, m)| vec![esc(set), cell(&m["matched"])])
        .collect();
    table(&mut o, &["parties", "people matched"], &rows);

    // Insight.
    let insight = &report["insight"];
    if insight.is_object() {
        o.push_str("<h2>Insight · 洞察</h2>");
        let rows: Vec<Vec<String>> = insight["overlap"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(set, v)| {
                vec![
                    esc(set),
                    cell(&v["people"]),
                    v["bound95"]
                        .as_f64()
                        .map_or("—".into(), |b| format!("±{b:.0}")),
                    cell(&v["truth_linkable"]),
                ]
            })
            .collect();
        table(
            &mut o,
            &[
                "parties",
                "people (released)",
                "95% noise bound",
                "truth (linkable)",
            ],
            &rows,
        );
        let profile: Vec<(String, f64)> = arr(&insight["profile"]["rows"])
            .iter()
            .filter_map(|r| Some((r[0].as_str()?.to_string(), r[1].as_f64()?)))
            .collect();
        bars(
            &mut o,
            &format!(
                "{} · 人群画像",
                insight["profile"]["title"].as_str().unwrap_or("profile")
            ),
            &profile,
        );
    }

    // Attribution.
    let attribution = &report["attribution"];
    if attribution.is_object() {
        let _ = write!(
            o,
            "<h2>Attribution · 归因</h2><p>Campaigns of <b>{}</b>, last touch (7-day click, 1-day view), asked by {}. Coverage: {}.</p>",
            cell(&attribution["brand"]),
            cell(&attribution["analyst"]),
            cell(&attribution["coverage"]["caveat"]),
        );
        let rows: Vec<Vec<String>> = arr(&attribution["campaigns"])
            .iter()
            .map(|c| {
                let released = c["released"] == true;
                vec![
                    cell(&c["campaign_id"]),
                    cell(&c["spend_fen"]),
                    if released {
                        cell(&c["conversions"])
                    } else {
                        "suppressed".into()
                    },
                    cell(&c["truth_linked"]["conversions"]),
                    if released {
                        cell(&c["gmv_fen"])
                    } else {
                        "—".into()
                    },
                    cell(&c["truth_linked"]["gmv_fen"]),
                    cell(&c["roas"]),
                    cell(&c["cpa_fen"]),
                ]
            })
            .collect();
        table(
            &mut o,
            &[
                "campaign",
                "spend (fen)",
                "attributed orders",
                "truth",
                "attributed GMV (fen)",
                "truth",
                "ROAS",
                "CPA (fen)",
            ],
            &rows,
        );
        for c in arr(&attribution["campaigns"]) {
            let by: Vec<(String, f64)> = arr(&c["by_placement"])
                .iter()
                .filter_map(|r| {
                    Some((r["value"].as_str()?.to_string(), r["conversions"].as_f64()?))
                })
                .collect();
            bars(
                &mut o,
                &format!(
                    "{} attributed orders by placement · 按广告位",
                    c["campaign_id"].as_str().unwrap_or("?")
                ),
                &by,
            );
        }
    }

    // Lift.
    let lift = &report["lift"];
    if lift.is_object() {
        o.push_str("<h2>Incremental lift · 增量提升</h2><p>Test (may be exposed) against the randomised holdout (never exposed), among people linked to the retailer; intervals include the noise of the DP release.</p>");
        let campaigns = arr(&lift["campaigns"]);
        let rows: Vec<Vec<String>> = campaigns
            .iter()
            .map(|c| {
                let i = &c["relative_lift"];
                vec![
                    cell(&c["campaign_id"]),
                    cell(&c["test"]["people"]),
                    cell(&c["test"]["rate"]),
                    cell(&c["control"]["people"]),
                    cell(&c["control"]["rate"]),
                    if i.is_object() {
                        format!(
                            "{} [{}, {}]",
                            pct(&i["estimate"]),
                            pct(&i["low"]),
                            pct(&i["high"])
                        )
                    } else {
                        cell(&c["note"])
                    },
                    pct(&c["truth_linked"]["relative_lift"]),
                    cell(&c["interval_covers_truth"]),
                    cell(&c["iroas"]),
                ]
            })
            .collect();
        table(
            &mut o,
            &[
                "campaign",
                "test people",
                "test rate",
                "control people",
                "control rate",
                "relative lift [95%]",
                "truth",
                "covers truth",
                "iROAS",
            ],
            &rows,
        );
        intervals(&mut o, &campaigns);
    }

    // Reach.
    let reach = &report["reach"];
    if reach.is_object() {
        let parties: Vec<String> = arr(&reach["parties"])
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect();
        o.push_str("<h2>Reach and frequency · 触达与频次</h2><p>People reached on each media party, de-duplicated across them through the match.</p>");
        let mut header = vec!["campaign", "de-duplicated", "truth"];
        header.extend(parties.iter().map(String::as_str));
        header.push("overlap");
        let rows: Vec<Vec<String>> = arr(&reach["campaigns"])
            .iter()
            .map(|c| {
                let mut r = vec![
                    cell(&c["campaign_id"]),
                    cell(&c["deduplicated"]),
                    cell(&c["truth_linked"]["deduplicated"]),
                ];
                for p in &parties {
                    let v = arr(&c["parties"])
                        .into_iter()
                        .find(|x| x["party"] == p.as_str())
                        .map_or(Value::Null, |x| x["reach"].clone());
                    r.push(cell(&v));
                }
                r.push(cell(&c["overlap"]));
                r
            })
            .collect();
        table(&mut o, &header, &rows);
        if let Some(c) = arr(&reach["campaigns"]).first() {
            let freq: Vec<(String, f64)> = arr(&c["frequency"])
                .iter()
                .filter_map(|b| {
                    Some((
                        format!("{} impressions", b["impressions"].as_str()?),
                        b["people"].as_f64()?,
                    ))
                })
                .collect();
            bars(
                &mut o,
                &format!(
                    "{} people by impressions seen · 频次分布",
                    c["campaign_id"].as_str().unwrap_or("?")
                ),
                &freq,
            );
        }
    }

    let _ = writeln!(
        o,
        "<p class=\"note\">Written by jingteng {} (<code>jingteng demo</code>). The data behind it: report.json and truth.json next to this file.</p></body></html>",
        esc(report["jingteng"]["version"].as_str().unwrap_or("?"))
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_report_is_escaped() {
        let report = serde_json::json!({
            "contract": {"collaboration": "<script>x</script>"},
            "nodes": {"a&b": {"host": true, "imported": {"rows": 1234567}}},
        });
        let html = render(&report);
        assert!(!html.contains("<script>x"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("a&amp;b"));
        assert!(html.contains("1,234,567"));
    }

    #[test]
    fn numbers_read_as_people_read_them() {
        assert_eq!(cell(&serde_json::json!(-1234)), "-1,234");
        assert_eq!(cell(&serde_json::json!(8.0)), "8");
        assert_eq!(cell(&serde_json::json!(2.456)), "2.46");
        assert_eq!(cell(&Value::Null), "—");
        assert_eq!(pct(&serde_json::json!(0.125)), "+12.5%");
    }
}

//! `jingteng query` and `jingteng insight`: SQL and ready analyses over the joined view
//! under the privacy rules (local mode).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use jingteng_engine::{Answer, Engine, Limits, templates};

use crate::{InsightArgs, QueryArgs, QueryTarget, progress_bar};

/// The spec of a local-mode command (clap requires --spec unless --collab is given).
pub(crate) fn spec_of(target: &QueryTarget) -> anyhow::Result<&Path> {
    target
        .spec
        .as_deref()
        .context("this command needs --spec FILE (local mode) or --collab ID --dir NODE")
}

/// The local state folder: the joined view and the catalog (budget ledger, answer
/// cache, audit log).
pub(crate) fn state_dir(target: &QueryTarget) -> anyhow::Result<PathBuf> {
    let spec = spec_of(target)?;
    Ok(target
        .state
        .clone()
        .unwrap_or_else(|| spec.parent().unwrap_or(Path::new(".")).join(".jingteng")))
}

/// Builds (or reuses) the joined view and opens the engine over it.
pub(crate) async fn open(target: &QueryTarget) -> anyhow::Result<Engine> {
    let spec = spec_of(target)?;
    let state = state_dir(target)?;
    let bar = Arc::new(progress_bar(0, "rows"));
    bar.set_message("joining the parties' tables (match)");
    let b2 = bar.clone();
    let info = jingteng_engine::view::build_local(
        spec,
        &state,
        Arc::new(move |party: &str, rows: u64| {
            b2.set_message(format!("matching {party}"));
            b2.inc_length(rows);
            b2.inc(rows);
        }),
    )
    .await
    .with_context(|| format!("building the joined view of {}", spec.display()))?;
    bar.finish_and_clear();
    let collab = jingteng_match::read_spec(spec)?;
    let catalog_path = state.join("catalog.sqlite");
    let catalog = jingteng_catalog::Catalog::open(&catalog_path)
        .with_context(|| format!("opening {}", catalog_path.display()))?;
    let limits = Limits {
        memory_bytes: target.memory_mb.saturating_mul(1 << 20),
        timeout: std::time::Duration::from_secs(target.timeout),
    };
    Ok(Engine::open(&collab, &state, &info, catalog, limits).await?)
}

/// Networked mode: this node (--dir) and the collaboration (--collab).
pub(crate) fn remote(
    target: &QueryTarget,
) -> Option<anyhow::Result<(jingteng_node::NodeDir, &str)>> {
    let collab = target.collab.as_deref()?;
    let dir = target.dir.as_deref()?;
    Some(
        jingteng_node::NodeDir::open(dir)
            .with_context(|| format!("opening the node at {}", dir.display()))
            .map(|n| (n, collab)),
    )
}

fn print_explain(tables: &[String], privacy: &serde_json::Value, plan: &str) {
    println!("approved; reads {}", tables.join(", "));
    let p = privacy;
    println!(
        "release: {}, min_people {}, ε {} per query, budget {}, groups per person {}, rows per person {}",
        p["mode"],
        p["min_people"],
        p["epsilon"],
        p["budget"],
        p["max_groups_per_person"],
        p["max_rows_per_person"]
    );
    println!("{plan}");
}

pub(crate) fn query(args: QueryArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        if let Some(remote) = remote(&args.target) {
            let (node, collab) = remote?;
            let req = jingteng_node::QueryRequest {
                sql: args.sql.clone(),
                analyst: args.target.analyst.clone(),
                explain: args.explain,
            };
            match jingteng_node::query_host(&node, collab, &req).await? {
                jingteng_node::QueryReply::Explain {
                    tables,
                    privacy,
                    plan,
                } => {
                    print_explain(&tables, &privacy, &plan);
                }
                jingteng_node::QueryReply::Answer(answer) => {
                    print_or_json(&answer, args.target.json)?
                }
            }
            return Ok(());
        }
        let engine = open(&args.target).await?;
        if args.explain {
            let approved = engine.approve(&args.sql).await?;
            let tables: Vec<String> = approved.tables.iter().cloned().collect();
            print_explain(
                &tables,
                &serde_json::to_value(approved.privacy)?,
                &approved.plan().display_indent().to_string(),
            );
            return Ok(());
        }
        let answer = engine.query(&args.sql, &args.target.analyst).await?;
        print_or_json(&answer, args.target.json)
    })
}

fn print_or_json(answer: &Answer, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json(answer))?);
    } else {
        print_answer(answer);
    }
    Ok(())
}

pub(crate) fn insight(args: InsightArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let insight = templates::Insight {
            template: args.template.clone(),
            dimension: args.dimension.clone(),
            of: args.of.clone(),
            table: args.table.clone(),
            column: args.column.clone(),
            brand: args.brand.clone(),
        };
        let results = match remote(&args.target) {
            Some(remote) => {
                let (node, collab) = remote?;
                let req = jingteng_node::InsightRequest {
                    insight,
                    analyst: args.target.analyst.clone(),
                };
                jingteng_node::insight_host(&node, collab, &req).await?
            }
            None => {
                let mut engine = open(&args.target).await?;
                templates::insight(&mut engine, &insight, &args.target.analyst).await?
            }
        };
        if args.target.json {
            let v: Vec<serde_json::Value> = results
                .iter()
                .map(|r| serde_json::json!({"title": r.title, "sql": r.sql, "answer": json(&r.answer)}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for r in &results {
                println!("{}", r.title);
                print_answer(&r.answer);
                println!();
            }
        }
        Ok(())
    })
}

/// The answer as JSON: columns, rows as objects with whether each was noised and at
/// what scale, and the release summary.
pub(crate) fn json(a: &Answer) -> serde_json::Value {
    let noised = a.release.mode == "dp";
    let rows: Vec<serde_json::Value> = a
        .rows
        .iter()
        .map(|r| {
            let values: serde_json::Map<String, serde_json::Value> =
                a.columns.iter().cloned().zip(r.iter().cloned()).collect();
            let noise: serde_json::Map<String, serde_json::Value> = a
                .release
                .noise
                .iter()
                .map(|n| {
                    (
                        n.column.clone(),
                        serde_json::json!({"scale": n.scale, "bound95": n.bound95}),
                    )
                })
                .collect();
            serde_json::json!({"values": values, "noised": noised, "noise": noise})
        })
        .collect();
    serde_json::json!({
        "columns": a.columns,
        "rows": rows,
        "release": a.release,
        "budget": a.budget,
        "cached": a.cached,
    })
}

fn print_answer(a: &Answer) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(a.columns.clone());
    for r in &a.rows {
        t.add_row(r.iter().map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) if n.is_f64() => {
                format!("{:.2}", n.as_f64().unwrap_or(f64::NAN))
            }
            other => other.to_string(),
        }));
    }
    println!("{t}");
    let r = &a.release;
    match r.mode.as_str() {
        "threshold" => println!(
            "released in threshold mode: every row covers at least {} people; {} row(s) suppressed",
            r.min_people.unwrap_or_default(),
            r.suppressed_rows.unwrap_or_default()
        ),
        "dp" => {
            println!(
                "released with differential privacy: ε = {}, δ = {:e}; groups shown only when their noisy people count clears {}",
                r.epsilon.unwrap_or_default(),
                r.delta.unwrap_or_default(),
                r.selection_threshold.unwrap_or_default()
            );
            for n in &r.noise {
                match n.bound95 {
                    Some(b) => println!(
                        "  {}: discrete Laplace noise, scale {:.1}; 95% of answers within ±{b}",
                        n.column, n.scale
                    ),
                    None => println!(
                        "  {}: ratio of two noisy sums (scale {:.1} on the sum)",
                        n.column, n.scale
                    ),
                }
            }
        }
        _ => println!("no data about people was read"),
    }
    if a.cached {
        println!("served from the cache of an identical earlier query: no budget spent");
    }
    if let Some(b) = &a.budget {
        println!(
            "privacy budget: ε {:.2} spent of {:.2}, {:.2} left",
            b.spent, b.limit, b.remaining
        );
    }
}

//! `stackctl graph`: the stack as a picture reviewers look at. Resources are
//! grouped by service; dependency edges are dotted, dataflow edges solid,
//! green when `check` proves them and red when not.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::check::Report;
use crate::validate::Validated;

/// A dataflow link between two of the stack's resources, its actions merged.
struct Flow {
    from: String,
    to: String,
    actions: Vec<String>,
    proven: bool,
}

fn flows(v: &Validated, report: &Report) -> Vec<Flow> {
    let mut merged: BTreeMap<(String, String), Flow> = BTreeMap::new();
    for e in &report.edges {
        if !v.stack.decls.contains_key(&e.from) || !v.stack.decls.contains_key(&e.to) {
            continue;
        }
        let f = merged
            .entry((e.from.clone(), e.to.clone()))
            .or_insert_with(|| Flow {
                from: e.from.clone(),
                to: e.to.clone(),
                actions: Vec::new(),
                proven: true,
            });
        if !f.actions.contains(&e.action) {
            f.actions.push(e.action.clone());
        }
        f.proven &= e.allowed;
    }
    merged.into_values().collect()
}

/// Resources by service group, in file order within each.
fn groups(v: &Validated) -> BTreeMap<(&'static str, &'static str), Vec<&crate::config::Decl>> {
    let mut groups: BTreeMap<_, Vec<_>> = BTreeMap::new();
    let mut decls: Vec<_> = v.stack.decls.values().collect();
    decls.sort_by_key(|d| d.span.line);
    for d in decls {
        let service = v.schema(&d.id).service;
        groups
            .entry((service.key(), service.label()))
            .or_default()
            .push(d);
    }
    groups
}

/// Dependency edges: (dependent, dependency).
fn dependencies(v: &Validated) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = v
        .graph
        .deps
        .iter()
        .flat_map(|(id, ds)| ds.iter().map(move |d| (id.as_str(), d.as_str())))
        .collect();
    out.sort_by_key(|(a, b)| (v.stack.decls[*a].span.line, v.stack.decls[*b].span.line));
    out
}

pub fn mermaid(v: &Validated, report: &Report) -> String {
    let mut out = String::from("flowchart LR\n");
    for ((key, label), decls) in groups(v) {
        let _ = writeln!(out, "  subgraph {key} [{label}]");
        for d in decls {
            let shape = if d.is_data {
                format!(
                    "{}[/\"{}<br/><small>{}</small>\"/]",
                    d.id, d.id, d.type_name
                )
            } else {
                format!("{}[\"{}<br/><small>{}</small>\"]", d.id, d.id, d.type_name)
            };
            let _ = writeln!(out, "    {shape}");
        }
        out.push_str("  end\n");
    }
    // Mermaid styles links by their index, in the order they are drawn.
    let (mut dotted, mut green, mut red) = (Vec::new(), Vec::new(), Vec::new());
    let mut n = 0;
    for (from, to) in dependencies(v) {
        let _ = writeln!(out, "  {from} -.-> {to}");
        dotted.push(n.to_string());
        n += 1;
    }
    for f in flows(v, report) {
        let _ = writeln!(
            out,
            "  {} == \"{}\" ==> {}",
            f.from,
            f.actions.join("<br/>"),
            f.to
        );
        if f.proven { &mut green } else { &mut red }.push(n.to_string());
        n += 1;
    }
    for (links, style) in [
        (dotted, "stroke:#999,stroke-width:1px"),
        (green, "stroke:#2a2,stroke-width:3px"),
        (red, "stroke:#d22,stroke-width:3px"),
    ] {
        if !links.is_empty() {
            let _ = writeln!(out, "  linkStyle {} {style}", links.join(","));
        }
    }
    out
}

pub fn dot(v: &Validated, report: &Report) -> String {
    let mut out = String::from(
        "digraph stack {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
    );
    for ((key, label), decls) in groups(v) {
        let _ = writeln!(out, "  subgraph cluster_{key} {{\n    label=\"{label}\";");
        for d in decls {
            let shape = if d.is_data {
                ", shape=parallelogram"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    {} [label=\"{}\\n{}\"{shape}];",
                d.id, d.id, d.type_name
            );
        }
        out.push_str("  }\n");
    }
    for (from, to) in dependencies(v) {
        let _ = writeln!(out, "  {from} -> {to} [style=dotted, color=gray];");
    }
    for f in flows(v, report) {
        let color = if f.proven { "green" } else { "red" };
        let _ = writeln!(
            out,
            "  {} -> {} [label=\"{}\", color={color}, penwidth=2];",
            f.from,
            f.to,
            f.actions.join("\\n")
        );
    }
    out.push_str("}\n");
    out
}

pub fn json(v: &Validated, report: &Report) -> Value {
    let nodes: Vec<Value> = groups(v)
        .into_iter()
        .flat_map(|((key, _), decls)| {
            decls.into_iter().map(move |d| {
                json!({"id": d.id, "type": d.type_name, "service": key, "data": d.is_data})
            })
        })
        .collect();
    let mut edges: Vec<Value> = dependencies(v)
        .into_iter()
        .map(|(from, to)| json!({"from": from, "to": to, "kind": "dependency"}))
        .collect();
    edges.extend(flows(v, report).into_iter().map(|f| {
        json!({"from": f.from, "to": f.to, "kind": "dataflow", "actions": f.actions, "proven": f.proven})
    }));
    json!({"nodes": nodes, "edges": edges})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Stack;
    use std::path::Path;

    fn seed() -> (Validated, Report) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("stack.yaml");
        let stack = Stack::parse(&path, include_str!("../stack.yaml")).unwrap();
        let v = crate::validate::validate(stack, &[], Some("us-east-2")).unwrap();
        let report = crate::check::check(&v, Some("us-east-2"), &[]);
        (v, report)
    }

    #[test]
    fn the_readme_shows_the_seed_stacks_graph_as_the_command_draws_it() {
        let (v, report) = seed();
        let drawn = format!("```mermaid\n{}```", mermaid(&v, &report));
        let readme = include_str!("../README.md");
        let start = readme
            .find("<!-- graph:start -->")
            .expect("README has the graph markers");
        let end = readme
            .find("<!-- graph:end -->")
            .expect("README has the graph markers");
        let shown = readme[start + "<!-- graph:start -->".len()..end].trim();
        assert_eq!(
            shown, drawn,
            "the README's graph is stale: paste `stackctl graph` there (between the markers)"
        );
    }

    #[test]
    fn proven_links_are_green_and_broken_ones_red() {
        let (v, mut report) = seed();
        let text = mermaid(&v, &report);
        assert!(
            text.contains("slow_response_alarm == \"lambda:InvokeFunction\" ==> remediation"),
            "{text}"
        );
        assert!(text.contains("subgraph lambda [Lambda]"));
        assert!(!text.contains("#d22"));
        for e in report.edges.iter_mut().filter(|e| e.from == "lambda_topic") {
            e.allowed = false;
        }
        assert!(mermaid(&v, &report).contains("stroke:#d22"));
        assert!(dot(&v, &report)
            .contains("lambda_topic -> notifications [label=\"sqs:SendMessage\", color=red"));
        let j = json(&v, &report);
        assert!(j["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "dataflow" && e["proven"] == false));
    }
}

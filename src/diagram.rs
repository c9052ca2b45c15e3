//! `stackctl graph`: the stack as a picture reviewers look at. Resources are
//! grouped by service; dependency edges are dotted, dataflow edges solid,
//! green when `check` proves them and red when not.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::check::Report;
use crate::validate::Validated;

/// A dataflow link between two boxes, its actions merged.
pub(crate) struct Flow {
    pub from: String,
    pub to: String,
    pub actions: Vec<String>,
    pub proven: bool,
    /// Why each link that is not proven fails, as `check` says it.
    pub reasons: Vec<String>,
}

/// What is drawn for a resource, or for all instances of a collection at
/// once: `server["web-1"]` and `server["web-2"]` are the box `server[*]`,
/// `module.watch["a"].alarm` is `module.watch[*].alarm`.
pub(crate) struct Box {
    pub name: String,
    pub type_name: String,
    pub is_data: bool,
    pub count: usize,
}

impl Box {
    pub fn id(&self) -> String {
        node_id(&self.name)
    }

    pub fn label(&self) -> String {
        match self.name.contains("[*]") {
            true => format!("{} ×{}", self.name, self.count),
            false => self.name.clone(),
        }
    }
}

pub(crate) fn box_of(address: &str) -> String {
    let mut out = String::new();
    let mut rest = address;
    while let Some(open) = rest.find("[\"") {
        out.push_str(&rest[..open]);
        out.push_str("[*]");
        rest = rest[open..]
            .find("\"]")
            .map_or("", |close| &rest[open + close + 2..]);
    }
    out.push_str(rest);
    out
}

/// A box's name as Mermaid and DOT take an id.
pub(crate) fn node_id(name: &str) -> String {
    name.replace("[*]", "_all").replace('.', "_")
}

pub(crate) fn flows(v: &Validated, report: &Report) -> Vec<Flow> {
    let mut merged: BTreeMap<(String, String), Flow> = BTreeMap::new();
    for e in &report.edges {
        if !v.stack.decls.contains_key(&e.from) || !v.stack.decls.contains_key(&e.to) {
            continue;
        }
        let (from, to) = (node_id(&box_of(&e.from)), node_id(&box_of(&e.to)));
        let f = merged
            .entry((from.clone(), to.clone()))
            .or_insert_with(|| Flow {
                from,
                to,
                actions: Vec::new(),
                proven: true,
                reasons: Vec::new(),
            });
        if !f.actions.contains(&e.action) {
            f.actions.push(e.action.clone());
        }
        f.proven &= e.allowed;
        if let Some(why) = e.missing.as_ref().filter(|_| !e.allowed) {
            if !f.reasons.contains(why) {
                f.reasons.push(why.clone());
            }
        }
    }
    merged.into_values().collect()
}

/// Boxes by service group, in file order within each.
pub(crate) fn groups(v: &Validated) -> BTreeMap<(&'static str, &'static str), Vec<Box>> {
    let mut groups: BTreeMap<_, Vec<Box>> = BTreeMap::new();
    let mut decls: Vec<_> = v.stack.decls.values().collect();
    decls.sort_by_key(|d| d.span.line);
    for d in decls {
        let service = v.schema(&d.id).service;
        let boxes = groups.entry((service.key(), service.label())).or_default();
        let name = box_of(&d.id);
        match boxes.iter_mut().find(|b| b.name == name) {
            Some(b) => b.count += 1,
            None => boxes.push(Box {
                name,
                type_name: d.type_name.clone(),
                is_data: d.is_data,
                count: 1,
            }),
        }
    }
    groups
}

/// Dependency edges between boxes: (dependent, dependency).
pub(crate) fn dependencies(v: &Validated) -> Vec<(String, String)> {
    let line = |id: &str| v.stack.decls[id].span.line;
    let mut edges: Vec<(&str, &str)> = v
        .graph
        .deps
        .iter()
        .flat_map(|(id, ds)| ds.iter().map(move |d| (id.as_str(), d.as_str())))
        .collect();
    edges.sort_by_key(|(a, b)| (line(a), line(b)));
    let mut out: Vec<(String, String)> = Vec::new();
    for (a, b) in edges {
        let edge = (node_id(&box_of(a)), node_id(&box_of(b)));
        if edge.0 != edge.1 && !out.contains(&edge) {
            out.push(edge);
        }
    }
    out
}

pub fn mermaid(v: &Validated, report: &Report) -> String {
    let mut out = String::from("flowchart LR\n");
    for ((key, label), boxes) in groups(v) {
        let _ = writeln!(out, "  subgraph {key} [{label}]");
        for b in boxes {
            let (id, label, kind) = (b.id(), b.label().replace('"', "#quot;"), &b.type_name);
            let shape = if b.is_data {
                format!("{id}[/\"{label}<br/><small>{kind}</small>\"/]")
            } else {
                format!("{id}[\"{label}<br/><small>{kind}</small>\"]")
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
    for ((key, label), boxes) in groups(v) {
        let _ = writeln!(out, "  subgraph cluster_{key} {{\n    label=\"{label}\";");
        for b in boxes {
            let shape = if b.is_data {
                ", shape=parallelogram"
            } else {
                ""
            };
            let label = b.label().replace('"', "\\\"");
            let _ = writeln!(
                out,
                "    {} [label=\"{label}\\n{}\"{shape}];",
                b.id(),
                b.type_name
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
        .flat_map(|((key, _), boxes)| {
            boxes.into_iter().map(move |b| {
                json!({"id": b.id(), "label": b.label(), "count": b.count, "type": b.type_name, "service": key, "data": b.is_data})
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
    fn docs_review_shows_the_seed_stacks_graph_as_the_command_draws_it() {
        let (v, report) = seed();
        let drawn = format!("```mermaid\n{}```", mermaid(&v, &report));
        let page = include_str!("../docs/review.md");
        let start = page
            .find("<!-- graph:start -->")
            .expect("docs/review.md has the graph markers");
        let end = page
            .find("<!-- graph:end -->")
            .expect("docs/review.md has the graph markers");
        let shown = page[start + "<!-- graph:start -->".len()..end].trim();
        assert_eq!(
            shown, drawn,
            "docs/review.md's graph is stale: paste `stackctl graph` there (between the markers)"
        );
    }

    #[test]
    fn a_collection_is_one_box_with_its_count() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet/stack.yaml");
        let stack = Stack::load_in(&path, Some("dev")).unwrap();
        let v = crate::validate::validate(stack, &[], Some("us-east-2")).unwrap();
        let report = crate::check::check(&v, Some("us-east-2"), &[]);
        let text = mermaid(&v, &report);
        assert_contains!(text, "server_all[\"server[*] ×2<br/>");
        assert_contains!(
            text,
            "module_watch_all_alarm == \"lambda:InvokeFunction\" ==> remediation"
        );
        assert_eq!(text.matches("aws_instance").count(), 1, "{text}");
        assert!(
            !text.contains("#d22"),
            "every link of the fleet is proven: {text}"
        );
    }

    #[test]
    fn proven_links_are_green_and_broken_ones_red() {
        let (v, mut report) = seed();
        let text = mermaid(&v, &report);
        assert_contains!(
            text,
            "slow_response_alarm == \"lambda:InvokeFunction\" ==> remediation"
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

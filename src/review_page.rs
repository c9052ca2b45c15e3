//! `stackctl review`: one self-contained HTML page for a reviewer. The stack
//! drawn with `check`'s verdict on each dataflow link, each resource's
//! properties and planned change, the plan, the findings, and a simulation's
//! timeline. Nothing is fetched when it opens (styles and script inline); the
//! plan and the findings read as plain HTML without JavaScript.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::check::{Report, Severity};
use crate::diagram::{self, Flow};
use crate::model::{declared_props, StackValues};
use crate::sim::{clock, Outcome, Series};
use crate::validate::Validated;

/// A simulation of log lines through the stack, for the timeline.
pub struct Timeline {
    pub outcome: Outcome,
    pub series: Vec<Series>,
}

/// What the page shows.
pub struct Inputs<'a> {
    pub v: &'a Validated,
    pub report: &'a Report,
    pub region: Option<String>,
    /// The plan as `plan --json` prints it (sensitive values masked), or why
    /// there is none.
    pub plan: Result<Value, String>,
    pub timeline: Option<Timeline>,
}

const NODE_H: f64 = 46.0;
const ROW_H: f64 = 60.0;
const COL_GAP: f64 = 80.0;
/// Between the side-by-side columns of one depth.
const STACK_GAP: f64 = 24.0;
/// Boxes of one band and depth per column.
const MAX_ROWS: usize = 8;
const MARGIN: f64 = 24.0;
/// Room at the top of a service's band for its name.
const BAND_HEAD: f64 = 30.0;

/// The page, every text in it passed through the run's redactor.
pub fn page(i: &Inputs) -> String {
    let mut out = String::new();
    let name = esc(&i.v.stack.name);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>stackctl review: {name}</title><style>{STYLE}</style></head><body>\
         <header><h1>Review of stack <code>{name}</code></h1>{}</header><main>",
        summary(i)
    );
    let changes = changes_by_id(&i.plan);
    graph_section(&mut out, i);
    resources_section(&mut out, i, &changes);
    plan_section(&mut out, i);
    findings_section(&mut out, i);
    if let Some(t) = &i.timeline {
        timeline_section(&mut out, t);
    }
    let _ = writeln!(
        out,
        "</main><aside id=\"inspector\" hidden></aside><script>{SCRIPT}</script></body></html>"
    );
    i.v.redactor.redact(&out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn summary(i: &Inputs) -> String {
    let errors = i.report.errors();
    let warnings = i.report.findings.len() - errors;
    let plan = match &i.plan {
        Ok(p) => {
            let s = &p["summary"];
            format!(
                "plan: {} to add, {} to change, {} to destroy",
                s["add"], s["change"], s["destroy"]
            )
        }
        Err(why) => format!("no plan ({})", esc(why)),
    };
    let data = i.v.stack.decls.values().filter(|d| d.is_data).count();
    format!(
        "<p class=\"summary\">{} resources, {data} data sources · check: {errors} error(s), {warnings} warning(s) · {plan}</p>",
        i.v.stack.decls.len() - data
    )
}

/// Each box's place and width: columns by dependency depth (what depends on
/// nothing at the left), each as wide as its longest label; rows in one band
/// per service.
struct Layout {
    at: HashMap<String, (f64, f64, f64)>,
    bands: Vec<(&'static str, f64, f64)>,
    width: f64,
    height: f64,
}

fn depths(ids: &[String], deps: &[(String, String)]) -> HashMap<String, usize> {
    let mut depth: HashMap<String, usize> = ids.iter().map(|id| (id.clone(), 0)).collect();
    // Longest path by relaxation; a box-level cycle (collections folded into
    // one box) stops after as many rounds as there are boxes.
    for _ in 0..ids.len() {
        let mut changed = false;
        for (dependent, dependency) in deps {
            let want = depth.get(dependency).copied().unwrap_or(0) + 1;
            if let Some(d) = depth.get_mut(dependent).filter(|d| **d < want) {
                *d = want;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

/// How wide a box must be for its name (13 px bold) and type (11 px).
fn box_width(b: &diagram::Box) -> f64 {
    let name = b.label().chars().count() as f64 * 8.4;
    let ty = b.type_name.chars().count() as f64 * 6.4;
    name.max(ty).max(140.0) + 18.0
}

type Groups = BTreeMap<(&'static str, &'static str), Vec<diagram::Box>>;

fn layout(groups: &Groups, deps: &[(String, String)]) -> Layout {
    let ids: Vec<String> = groups.values().flatten().map(|b| b.id()).collect();
    let depth = depths(&ids, deps);
    let columns = depth.values().max().map_or(1, |d| d + 1);
    // A depth's boxes of one band stand MAX_ROWS to a column, side by side,
    // so that a wide stack grows to the right rather than into one tall column.
    let mut widths = vec![0.0f64; columns];
    let mut per_cell: BTreeMap<(&str, usize), usize> = BTreeMap::new();
    for ((_, label), boxes) in groups {
        for b in boxes {
            let col = depth[&b.id()];
            widths[col] = widths[col].max(box_width(b));
            *per_cell.entry((label, col)).or_default() += 1;
        }
    }
    let mut stacks = vec![1usize; columns];
    for ((_, col), n) in &per_cell {
        stacks[*col] = stacks[*col].max(n.div_ceil(MAX_ROWS));
    }
    let mut xs = Vec::with_capacity(columns);
    let mut x = MARGIN;
    for (w, n) in widths.iter().zip(&stacks) {
        xs.push(x);
        x += (w + STACK_GAP) * *n as f64 - STACK_GAP + COL_GAP;
    }
    // Bands in the order of their boxes' mean depth: the pipeline reads as a
    // staircase from the top left, most links between neighbouring bands.
    let mut ordered: Vec<(&'static str, &Vec<diagram::Box>)> = groups
        .iter()
        .map(|((_, label), boxes)| (*label, boxes))
        .collect();
    let mean = |boxes: &Vec<diagram::Box>| {
        let sum: usize = boxes.iter().map(|b| depth[&b.id()]).sum();
        sum as f64 / boxes.len().max(1) as f64
    };
    ordered.sort_by(|a, b| mean(a.1).total_cmp(&mean(b.1)).then(a.0.cmp(b.0)));
    let mut at = HashMap::new();
    let mut bands = Vec::new();
    let mut y = 8.0;
    for (label, boxes) in ordered {
        let mut placed = vec![0usize; columns];
        for b in boxes {
            let col = depth[&b.id()];
            let (stack, row) = (placed[col] / MAX_ROWS, placed[col] % MAX_ROWS);
            let left = xs[col] + stack as f64 * (widths[col] + STACK_GAP);
            at.insert(
                b.id(),
                (left, y + BAND_HEAD + row as f64 * ROW_H, widths[col]),
            );
            placed[col] += 1;
        }
        let rows = placed.iter().max().copied().unwrap_or(1).clamp(1, MAX_ROWS);
        let height = BAND_HEAD + rows as f64 * ROW_H;
        bands.push((label, y, height));
        y += height + 8.0;
    }
    Layout {
        at,
        bands,
        width: x - COL_GAP + MARGIN,
        height: y,
    }
}

/// A curve from one box to another: out of the right side into the left,
/// or, between boxes of one column, out of and back into the right side.
fn path(from: (f64, f64, f64), to: (f64, f64, f64)) -> String {
    let (fy, ty) = (from.1 + NODE_H / 2.0, to.1 + NODE_H / 2.0);
    if (from.0 - to.0).abs() < 1.0 {
        let x = from.0 + from.2;
        return format!("M{x},{fy} C{},{fy} {},{ty} {x},{ty}", x + 50.0, x + 50.0);
    }
    let (fx, tx) = match from.0 < to.0 {
        true => (from.0 + from.2, to.0),
        false => (from.0, to.0 + to.2),
    };
    let mid = (fx + tx) / 2.0;
    format!("M{fx},{fy} C{mid},{fy} {mid},{ty} {tx},{ty}")
}

fn graph_section(out: &mut String, i: &Inputs) {
    let groups = diagram::groups(i.v);
    let deps = diagram::dependencies(i.v);
    let flows = diagram::flows(i.v, i.report);
    let l = layout(&groups, &deps);
    let _ = write!(
        out,
        "<section id=\"graph\"><h2>The stack</h2><p class=\"legend\">Solid links carry data: \
         <span class=\"proven\">green</span> where <code>check</code> proves the policies allow them, \
         <span class=\"broken\">red</span> where they do not. Dotted links are dependencies. \
         Select a resource for its properties and planned change.</p>\
         <div class=\"canvas\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\" \
         viewBox=\"0 0 {:.0} {:.0}\"><defs>{}</defs>",
        l.width,
        l.height,
        l.width,
        l.height,
        ["dep", "proven", "broken"]
            .iter()
            .map(|k| format!("<marker id=\"arrow-{k}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path class=\"head-{k}\" d=\"M0,0 L10,5 L0,10 z\"/></marker>"))
            .collect::<String>()
    );
    for (label, y, h) in &l.bands {
        let _ = write!(
            out,
            "<g class=\"band\"><rect x=\"4\" y=\"{y}\" width=\"{:.0}\" height=\"{h}\" rx=\"8\"/>\
             <text x=\"14\" y=\"{}\">{}</text></g>",
            l.width - 8.0,
            y + 20.0,
            esc(label)
        );
    }
    for (dependent, dependency) in &deps {
        let (Some(a), Some(b)) = (l.at.get(dependent), l.at.get(dependency)) else {
            continue;
        };
        let _ = write!(
            out,
            "<path class=\"edge dep\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" marker-end=\"url(#arrow-dep)\"><title>{} depends on {}</title></path>",
            esc(dependent),
            esc(dependency),
            path(*a, *b),
            esc(dependent),
            esc(dependency)
        );
    }
    for f in &flows {
        flow_edge(out, &l, f);
    }
    for boxes in groups.values() {
        for b in boxes {
            let (x, y, w) = l.at[&b.id()];
            let _ = write!(
                out,
                "<a class=\"node{}\" href=\"#r-{id}\" data-id=\"{id}\"><title>{name} ({ty})</title>\
                 <rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{NODE_H}\" rx=\"6\"/>\
                 <text class=\"name\" x=\"{}\" y=\"{}\">{label}</text>\
                 <text class=\"type\" x=\"{}\" y=\"{}\">{ty}</text></a>",
                if b.is_data { " data" } else { "" },
                x + 8.0,
                y + 19.0,
                x + 8.0,
                y + 36.0,
                id = esc(&b.id()),
                name = esc(&b.name),
                label = esc(&b.label()),
                ty = esc(&b.type_name),
            );
        }
    }
    out.push_str("</svg></div>");
    links_table(out, &flows);
    out.push_str("</section>");
}

fn flow_edge(out: &mut String, l: &Layout, f: &Flow) {
    let (Some(a), Some(b)) = (l.at.get(&f.from), l.at.get(&f.to)) else {
        return;
    };
    let kind = if f.proven { "proven" } else { "broken" };
    let why = match f.proven {
        true => "allowed".to_string(),
        false => f.reasons.join("; "),
    };
    let _ = write!(
        out,
        "<path class=\"edge flow {kind}\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" marker-end=\"url(#arrow-{kind})\"><title>{} → {}: {} ({})</title></path>",
        esc(&f.from),
        esc(&f.to),
        path(*a, *b),
        esc(&f.from),
        esc(&f.to),
        esc(&f.actions.join(", ")),
        esc(&why)
    );
}

/// The dataflow links as text: what the colours say, and why a red one is red.
fn links_table(out: &mut String, flows: &[Flow]) {
    if flows.is_empty() {
        return;
    }
    out.push_str("<h3>Dataflow links</h3><table class=\"links\"><thead><tr><th>from</th><th>to</th><th>actions</th><th>verdict</th></tr></thead><tbody>");
    for f in flows {
        let verdict = match f.proven {
            true => "<td class=\"proven\">proven</td>".to_string(),
            false => format!(
                "<td class=\"broken\">not allowed: {}</td>",
                esc(&f.reasons.join("; "))
            ),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td>{verdict}</tr>",
            esc(&f.from),
            esc(&f.to),
            esc(&f.actions.join(", "))
        );
    }
    out.push_str("</tbody></table>");
}

fn changes_by_id(plan: &Result<Value, String>) -> HashMap<String, Value> {
    let Ok(plan) = plan else {
        return HashMap::new();
    };
    let changes = plan["changes"].as_array().cloned().unwrap_or_default();
    changes
        .into_iter()
        .filter_map(|c| Some((c["id"].as_str()?.to_string(), c)))
        .collect()
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// Each box's resources: properties, and the planned change when there is
/// a plan. Without JavaScript each is a section the graph's boxes link to.
fn resources_section(out: &mut String, i: &Inputs, changes: &HashMap<String, Value>) {
    out.push_str("<section id=\"resources\"><h2>Resources</h2>");
    let values = StackValues::offline(i.v, i.region.clone(), None);
    let mut by_box: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut decls: Vec<_> = i.v.stack.decls.values().collect();
    decls.sort_by_key(|d| d.span.line);
    for d in &decls {
        by_box
            .entry(diagram::box_of(&d.id))
            .or_default()
            .push(&d.id);
    }
    for (name, ids) in &by_box {
        let decl = &i.v.stack.decls[ids[0]];
        let _ = write!(
            out,
            "<section class=\"resource\" id=\"r-{}\"><h3>{} <small>{}</small></h3><p class=\"where\">{}:{}</p>",
            esc(&diagram::node_id(name)),
            esc(name),
            esc(&decl.type_name),
            esc(&i.v.stack.path.display().to_string()),
            decl.span.line
        );
        for id in ids {
            if ids.len() > 1 {
                let _ = write!(out, "<h4>{}</h4>", esc(id));
            }
            match changes.get(*id) {
                Some(c) => change_table(out, c),
                None => {
                    let decl = &i.v.stack.decls[*id];
                    let props = declared_props(i.v, id, &values, &|_, _| None);
                    let paths = crate::sensitive::paths(decl, i.v.schema(id), &i.v.sensitive_vars);
                    let shown = crate::sensitive::mask(&props, &paths);
                    props_table(out, &shown);
                }
            }
        }
        out.push_str("</section>");
    }
    out.push_str("</section>");
}

fn shown_value(v: &Value) -> String {
    text_of(&crate::plan::as_shown(v.clone()))
}

fn props_table(out: &mut String, props: &Map<String, Value>) {
    out.push_str(
        "<p class=\"action\">no plan: the properties as written</p><table class=\"props\"><tbody>",
    );
    for (k, v) in props {
        let _ = write!(
            out,
            "<tr><th>{}</th><td><pre>{}</pre></td></tr>",
            esc(k),
            esc(&shown_value(v))
        );
    }
    out.push_str("</tbody></table>");
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One change: its action, and per property before → after, the changed
/// ones marked, with the ones that force a replacement named.
fn change_table(out: &mut String, c: &Value) {
    let action = c["action"].as_str().unwrap_or("no-op");
    let _ = write!(out, "<p class=\"action {action}\">{action}");
    if let Some(reason) = c["reason"].as_str() {
        let _ = write!(out, ": {}", esc(reason));
    }
    out.push_str("</p>");
    let changed = strings(&c["changed"]);
    let forcing = strings(&c["replace_because"]);
    let empty = Map::new();
    let before = c["before"].as_object().unwrap_or(&empty);
    let after = c["after"].as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = after.keys().collect();
    keys.extend(before.keys().filter(|k| !after.contains_key(*k)));
    out.push_str("<table class=\"change\"><thead><tr><th>property</th><th>before</th><th>after</th></tr></thead><tbody>");
    for k in keys {
        let mark = match (
            forcing.contains(k),
            changed.contains(k) || action == "create",
        ) {
            (true, _) => " class=\"forces\"",
            (false, true) => " class=\"changed\"",
            _ => "",
        };
        let note = match forcing.contains(k) {
            true => " <em>forces replacement</em>",
            false => "",
        };
        let _ = write!(
            out,
            "<tr{mark}><th>{}{note}</th><td><pre>{}</pre></td><td><pre>{}</pre></td></tr>",
            esc(k),
            esc(&before.get(k).map(shown_value).unwrap_or_default()),
            esc(&after.get(k).map(shown_value).unwrap_or_default())
        );
    }
    out.push_str("</tbody></table>");
}

fn plan_section(out: &mut String, i: &Inputs) {
    out.push_str("<section id=\"plan\"><h2>The plan</h2>");
    let plan = match &i.plan {
        Ok(p) => p,
        Err(why) => {
            let _ = write!(out, "<p>No plan: {}.</p></section>", esc(why));
            return;
        }
    };
    let changes = plan["changes"].as_array().cloned().unwrap_or_default();
    let acting: Vec<&Value> = changes.iter().filter(|c| c["action"] != "no-op").collect();
    if acting.is_empty() {
        out.push_str("<p>No changes: AWS matches the stack file.</p></section>");
        return;
    }
    out.push_str("<table class=\"plan\"><thead><tr><th>resource</th><th>action</th><th>what changes</th></tr></thead><tbody>");
    for c in acting {
        let id = c["id"].as_str().unwrap_or_default();
        let action = c["action"].as_str().unwrap_or_default();
        let forcing = strings(&c["replace_because"]);
        let mut what: Vec<String> = strings(&c["changed"])
            .iter()
            .map(|p| {
                let force = match forcing.contains(p) {
                    true => " (forces replacement)",
                    false => "",
                };
                format!(
                    "{}: {} → {}{force}",
                    esc(p),
                    esc(&shown_value(&c["before"][p])),
                    esc(&shown_value(&c["after"][p]))
                )
            })
            .collect();
        if action == "create" {
            what = vec![format!(
                "{} properties",
                c["after"].as_object().map_or(0, Map::len)
            )];
        }
        let _ = write!(
            out,
            "<tr class=\"{action}\"><td><a href=\"#r-{}\">{}</a> <small>{}</small></td><td>{action}</td><td>{}</td></tr>",
            esc(&diagram::node_id(&diagram::box_of(id))),
            esc(id),
            esc(c["type"].as_str().unwrap_or_default()),
            what.join("<br>")
        );
    }
    out.push_str("</tbody></table></section>");
}

fn findings_section(out: &mut String, i: &Inputs) {
    out.push_str("<section id=\"findings\"><h2>What <code>check</code> finds</h2>");
    if i.report.findings.is_empty() {
        out.push_str(
            "<p>Nothing: every rule passes and every dataflow link is proven.</p></section>",
        );
        return;
    }
    let file = esc(&i.v.stack.path.display().to_string());
    out.push_str("<table class=\"findings\"><thead><tr><th>where</th><th>severity</th><th>rule</th><th>resource</th><th>finding</th><th>fix</th></tr></thead><tbody>");
    for f in &i.report.findings {
        let severity = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let property = f
            .property
            .as_deref()
            .map_or(String::new(), |p| format!("<code>{}</code>: ", esc(p)));
        let _ = write!(
            out,
            "<tr class=\"{severity}\"><td>{file}:{}</td><td>{severity}</td><td>{}</td><td>{}</td><td>{property}{}</td><td>{}</td></tr>",
            f.line,
            f.rule,
            esc(&f.resource),
            esc(&f.message),
            esc(&f.fix)
        );
    }
    out.push_str("</tbody></table></section>");
}

fn timeline_section(out: &mut String, t: &Timeline) {
    out.push_str("<section id=\"timeline\"><h2>The simulation</h2>");
    for s in &t.series {
        chart(out, s);
    }
    out.push_str("<table class=\"hops\"><thead><tr><th>time</th><th>resource</th><th>what</th><th>detail</th></tr></thead><tbody>");
    for h in &t.outcome.timeline {
        let _ = write!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.kind),
            clock(h.t_ms),
            esc(&h.resource),
            esc(&h.kind),
            esc(&h.detail)
        );
    }
    out.push_str("</tbody></table>");
    if !t.outcome.messages.is_empty() {
        out.push_str("<h3>Messages in the queues</h3><ul class=\"messages\">");
        for m in &t.outcome.messages {
            let _ = write!(
                out,
                "<li>{} {}: <pre>{}</pre></li>",
                clock(m.t_ms),
                esc(&m.queue),
                esc(&m.body)
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
}

/// One alarm's datapoints per period as bars, the threshold as a line.
fn chart(out: &mut String, s: &Series) {
    let (w, h, pad) = (640.0, 160.0, 24.0);
    let top = s
        .points
        .iter()
        .filter_map(|p| p.1)
        .fold(s.threshold, f64::max)
        .max(1.0)
        * 1.15;
    let step = (w - 2.0 * pad) / s.points.len().max(1) as f64;
    let y = |v: f64| h - pad - v / top * (h - 2.0 * pad);
    let _ = write!(
        out,
        "<figure class=\"chart\"><figcaption>{} — {} per {} s, threshold {} {}</figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">",
        esc(&s.alarm),
        esc(&s.metric),
        s.period_ms / 1000,
        s.comparison,
        s.threshold
    );
    for (n, (t, v)) in s.points.iter().enumerate() {
        let x = pad + n as f64 * step;
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{}\">{}</text>",
            x + 2.0,
            h - 6.0,
            clock(*t)
        );
        let Some(v) = v else {
            continue;
        };
        let breaching = match s.comparison {
            ">" => *v > s.threshold,
            ">=" => *v >= s.threshold,
            "<" => *v < s.threshold,
            _ => *v <= s.threshold,
        };
        let _ = write!(
            out,
            "<rect class=\"datapoint{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{} {v}</title></rect>\
             <text class=\"value\" x=\"{:.1}\" y=\"{:.1}\">{v}</text>",
            if breaching { " breaching" } else { "" },
            x + 1.0,
            y(*v),
            (step - 2.0).max(1.0),
            (h - pad - y(*v)).max(0.5),
            clock(*t),
            x + 4.0,
            y(*v) - 4.0
        );
    }
    let _ = write!(
        out,
        "<line class=\"threshold\" x1=\"{pad}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\"/></svg></figure>",
        w - pad,
        y(s.threshold),
        y(s.threshold)
    );
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:12px 20px;background:#23324a;color:#fff}header h1{margin:0;font-size:20px}
.summary{margin:4px 0 0;opacity:.9}main{padding:0 20px 40px}
h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:28px}
.canvas{overflow:auto;max-height:80vh;border:1px solid #ddd;background:#fff}
.band rect{fill:#f1f4f9;stroke:#dde3ee}.band text{font-weight:600;fill:#56627a}
.node rect{fill:#fff;stroke:#56627a;stroke-width:1.2}.node.data rect{stroke-dasharray:5 3}
.node:hover rect,.node.selected rect{stroke:#1d6fd1;stroke-width:2.5}
.node text.name{font-size:13px;font-weight:600;fill:#222}.node text.type{font-size:11px;fill:#667}
.edge{fill:none}.edge.dep{stroke:#999;stroke-width:1;stroke-dasharray:3 3}
.edge.flow{stroke-width:3}.edge.proven{stroke:#2a2}.edge.broken{stroke:#d22}
.head-dep{fill:#999}.head-proven{fill:#2a2}.head-broken{fill:#d22}
.proven{color:#1a7a1a}.broken{color:#b01515}
table{border-collapse:collapse;margin:8px 0;background:#fff}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
pre{margin:0;white-space:pre-wrap;word-break:break-all;font-size:12px}
tr.changed th,tr.changed td{background:#fff7dc}tr.forces th,tr.forces td{background:#ffe4e1}
.action{font-weight:600}.action.create{color:#1a7a1a}.action.delete{color:#b01515}.action.replace{color:#b05a00}.action.update{color:#8a6d00}
tr.error td{background:#ffecec}tr.warning td{background:#fff8e0}
.resource{border:1px solid #ddd;background:#fff;padding:4px 12px;margin:10px 0}.resource:target{outline:3px solid #1d6fd1}
.where{color:#667;margin:0}.datapoint{fill:#4a78c2}.datapoint.breaching{fill:#d55}.chart text{font-size:11px;fill:#445}.threshold{stroke:#d22;stroke-dasharray:6 3;stroke-width:1.5}
tr.state td{background:#eef3ff;font-weight:600}
#inspector{position:fixed;right:12px;top:12px;bottom:12px;width:min(460px,40vw);overflow:auto;background:#fff;border:2px solid #1d6fd1;padding:8px 12px;box-shadow:0 4px 18px #0003}
#inspector button{float:right}
"#;

/// Selecting a box shows its resource section beside the graph; the
/// links work without it.
const SCRIPT: &str = r#"
(function(){
  var panel=document.getElementById('inspector');
  function show(id){
    var section=document.getElementById('r-'+id);
    if(!section){return;}
    panel.innerHTML='<button type="button" aria-label="close">×</button>'+section.innerHTML;
    panel.hidden=false;
    panel.querySelector('button').onclick=function(){panel.hidden=true;};
    document.querySelectorAll('.node.selected').forEach(function(n){n.classList.remove('selected');});
    var node=document.querySelector('.node[data-id="'+id+'"]');
    if(node){node.classList.add('selected');}
  }
  document.querySelectorAll('.node').forEach(function(n){
    n.addEventListener('click',function(e){e.preventDefault();show(n.getAttribute('data-id'));});
  });
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Stack;
    use serde_json::json;
    use std::path::Path;

    fn inputs_for(src: &str) -> (Validated, Report) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("stack.yaml");
        let stack = Stack::parse(&path, src).unwrap();
        let v = crate::validate::validate(stack, &[], Some("us-east-2")).unwrap();
        let report = crate::check::check(&v, Some("us-east-2"), &[]);
        (v, report)
    }

    fn page_of(src: &str, plan: Result<Value, String>) -> String {
        let (v, report) = inputs_for(src);
        page(&Inputs {
            v: &v,
            report: &report,
            region: Some("us-east-2".into()),
            plan,
            timeline: None,
        })
    }

    const SEED: &str = include_str!("../stack.yaml");

    #[test]
    fn every_box_and_dataflow_link_of_the_stack_is_drawn_and_proven() {
        let (v, report) = inputs_for(SEED);
        let html = page_of(SEED, Err("offline".into()));
        let boxes: usize = diagram::groups(&v).values().map(Vec::len).sum();
        assert_eq!(html.matches("<a class=\"node").count(), boxes);
        let flows = diagram::flows(&v, &report).len();
        assert!(flows >= 6, "{flows}");
        assert_eq!(html.matches("class=\"edge flow proven\"").count(), flows);
        assert!(!html.contains("edge flow broken"));
    }

    #[test]
    fn a_queue_policy_naming_another_topic_draws_a_red_link_with_the_reason() {
        let other = "arn:aws:sns:us-east-2:123456789012:someone-elses-topic";
        let src = SEED.replacen(
            "ArnEquals: {\"aws:SourceArn\": \"${lambda_topic.arn}\"}",
            &format!("ArnEquals: {{\"aws:SourceArn\": \"{other}\"}}"),
            1,
        );
        assert_ne!(src, SEED);
        let html = page_of(&src, Err("offline".into()));
        let red = html
            .split("<path class=\"edge flow broken\"")
            .nth(1)
            .expect("a red link");
        assert_contains!(red, "data-from=\"lambda_topic\" data-to=\"notifications\"");
        assert!(
            html.contains("<td class=\"broken\">not allowed: "),
            "the links table says why"
        );
    }

    #[test]
    fn the_page_fetches_nothing() {
        let html = page_of(SEED, Err("offline".into()));
        for external in [
            "src=\"http",
            "href=\"http",
            "url(http",
            "@import",
            "<link",
            "<script src",
        ] {
            assert!(!html.contains(external), "{external}");
        }
    }

    #[test]
    fn a_sensitive_variable_never_reaches_the_page() {
        let secret = "pa55-w0rd-that-must-not-show";
        let src = SEED
            .replacen(
                "variables:\n",
                &format!("variables:\n  api_key: {{sensitive: true, default: {secret}}}\n"),
                1,
            )
            .replacen(
                "          COOLDOWN_SECONDS: \"900\"\n",
                "          COOLDOWN_SECONDS: \"900\"\n          API_KEY: ${var.api_key}\n",
                1,
            );
        let html = page_of(&src, Err("offline".into()));
        assert!(
            html.contains("API_KEY"),
            "the key is shown, its value is not"
        );
        assert!(!html.contains(secret));
    }

    #[test]
    fn a_replacement_names_the_property_that_forces_it() {
        let plan = json!({
            "summary": {"add": 1, "change": 0, "destroy": 1},
            "changes": [{
                "id": "notifications", "type": "aws_sqs_queue", "action": "replace",
                "before": {"name": "old-queue", "visibility_timeout_seconds": 30},
                "after": {"name": "new-queue", "visibility_timeout_seconds": 30},
                "changed": ["name"], "replace_because": ["name"],
            }],
        });
        let html = page_of(SEED, Ok(plan));
        assert!(
            html.contains("name: old-queue → new-queue (forces replacement)"),
            "the plan table"
        );
        let section = html.split("id=\"r-notifications\"").nth(1).unwrap();
        assert!(section.contains("<p class=\"action replace\">replace</p>"));
        assert!(section.contains("<tr class=\"forces\"><th>name <em>forces replacement</em></th>"));
    }

    #[test]
    fn a_thousand_resources_each_get_a_box() {
        let mut src = String::from("stack: big\nregion: us-east-2\nresources:\n");
        for n in 0..1000 {
            let _ = write!(
                src,
                "  q{n}:\n    type: aws_sqs_queue\n    properties:\n      name: q{n}\n"
            );
        }
        let html = page_of(&src, Err("offline".into()));
        assert_eq!(html.matches("<a class=\"node").count(), 1000);
    }
}

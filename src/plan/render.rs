//! The plan as people read it: text, markdown for code review, JSON and the
//! drift report.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Action, Change, Plan};
use crate::providers;
use crate::schema::{self, contains_unknown, is_unknown, Schema};
use crate::sensitive;

fn render_value(v: &Value) -> String {
    if is_unknown(v) {
        return "(known after apply)".into();
    }
    if let Some(text) = sensitive::marker_text(v) {
        return text.into();
    }
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        other => {
            let mut out = other.clone();
            mask_unknowns(&mut out);
            sensitive::unquote_markers(&out.to_string())
        }
    }
}

fn mask_unknowns(v: &mut Value) {
    match v {
        s @ Value::String(_) if is_unknown(s) => *s = Value::String("(known after apply)".into()),
        Value::Array(items) => items.iter_mut().for_each(mask_unknowns),
        Value::Object(m) => m.values_mut().for_each(mask_unknowns),
        _ => {}
    }
}

/// The markers of masked values as the text they stand for (for JSON).
fn markers_as_text(v: &mut Value) {
    match v {
        s @ Value::String(_) => {
            if let Some(text) = sensitive::marker_text(s) {
                *s = Value::String(text.to_string());
            }
        }
        Value::Array(items) => items.iter_mut().for_each(markers_as_text),
        Value::Object(m) => m.values_mut().for_each(markers_as_text),
        _ => {}
    }
}

/// A value as people are shown it: unknown values as "(known after
/// apply)", masked ones as the text their marker stands for.
pub fn as_shown(mut v: Value) -> Value {
    mask_unknowns(&mut v);
    markers_as_text(&mut v);
    v
}

/// A change with its sensitive values masked, for showing.
fn masked(c: &Change) -> Change {
    let (before, after) = sensitive::mask_pair(c.before.as_ref(), c.after.as_ref(), &c.sensitive);
    Change {
        before,
        after,
        ..c.clone()
    }
}

/// The plan as JSON for machines: unknown values become "(known after
/// apply)", sensitive ones "(sensitive)" (or "(sensitive, changed)").
pub fn to_json(plan: &Plan) -> Value {
    let shown = Plan {
        changes: plan.changes.iter().map(masked).collect(),
        ..plan.clone()
    };
    let mut v = serde_json::to_value(&shown).unwrap_or(Value::Null);
    mask_unknowns(&mut v);
    markers_as_text(&mut v);
    v
}

/// Drift found by the refresh, for the note printed above a plan.
pub fn render_drift(plan: &Plan) -> String {
    let mut out = String::new();
    for c in &plan.changes {
        if !c.drift.is_empty() {
            let _ = writeln!(
                out,
                "  ~ {} ({}): {} changed outside stackctl",
                c.id,
                c.type_name,
                c.drift.join(", ")
            );
        }
        if let Some(reason) = c
            .reason
            .as_deref()
            .filter(|r| r.contains("deleted outside"))
        {
            let _ = writeln!(out, "  - {} ({}): {reason}", c.id, c.type_name);
        }
    }
    let mut own = String::new();
    for c in &plan.changes {
        if let Some(u) = &c.unfinished {
            let said = c.reason.as_deref().filter(|r| r.contains(u.as_str()));
            let _ = writeln!(own, "  ! {} ({}): {}", c.id, c.type_name, said.unwrap_or(u));
        }
    }
    let mut note = String::new();
    if !out.is_empty() {
        note.push_str(&format!(
            "Note: objects have changed outside of stackctl since the last apply:\n{out}\n"
        ));
    }
    if !own.is_empty() {
        note.push_str(&format!(
            "Note: changes of stackctl's own did not finish (not drift):\n{own}\n"
        ));
    }
    note
}

/// A document or list that changed, as a line diff of its canonical JSON (the
/// form values are compared in), so one changed statement of a policy reads as
/// one line rather than two long ones. None for scalars, unknown or sensitive
/// values, and documents too big to diff cheaply.
fn render_structured_change(
    schema: Option<&Schema>,
    prop: &str,
    old: &Value,
    new: &Value,
) -> Option<String> {
    let p = schema?.prop(prop)?;
    if contains_unknown(old) || contains_unknown(new) {
        return None;
    }
    let (old, new) = (
        schema::canonical(p.compare, old),
        schema::canonical(p.compare, new),
    );
    let structured = |v: &Value| v.is_object() || v.is_array();
    // Short values read best on one line: ["a"] -> ["a", "b"].
    if !structured(&old) || !structured(&new) || old.to_string().len() + new.to_string().len() <= 80
    {
        return None;
    }
    let old = sensitive::unquote_markers(&serde_json::to_string_pretty(&old).ok()?);
    let new = sensitive::unquote_markers(&serde_json::to_string_pretty(&new).ok()?);
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    if a.len().saturating_mul(b.len()) > 250_000 {
        return None;
    }
    // A line that only gained or lost its trailing comma (a member added or
    // removed after it) is unchanged.
    let same = |x: &str, y: &str| x.trim_end_matches(',') == y.trim_end_matches(',');
    // Longest common subsequence of lines, filled from the end.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if same(a[i], b[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::from("(canonical JSON; - before, + after)");
    let (mut i, mut j) = (0, 0);
    let mut line = |sign: char, text: &str| {
        let _ = write!(out, "\n          {sign} {text}");
    };
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && same(a[i], b[j]) {
            line(' ', b[j]);
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            line('-', a[i]);
            i += 1;
        } else {
            line('+', b[j]);
            j += 1;
        }
    }
    Some(out)
}

/// The plan the way Terraform users read one.
pub fn render(plan: &Plan) -> String {
    let mut out = render_drift(plan);
    if !plan.has_changes() {
        out.push_str("No changes. The infrastructure matches the stack file.\n");
        return out;
    }
    out.push_str("stackctl will perform the following actions:\n\n");
    for m in &plan.moves {
        let _ = writeln!(out, "  # {} has moved to {}\n", m.from, m.to);
    }
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let (head, block) = render_change(c);
        out.push_str(&head);
        out.push_str(&block);
        out.push('\n');
    }
    out.push_str(&summary_line(plan));
    out.push('\n');
    for hint in rename_hints(plan) {
        let _ = writeln!(out, "\n{hint}");
    }
    out
}

/// A destroy and a create of one type that look like one resource renamed:
/// the same identity (`name`), or the only destroy and create of that type.
/// Renaming a logical id destroys the object unless a move keeps it.
pub fn rename_hints(plan: &Plan) -> Vec<String> {
    let of = |action: Action| -> Vec<&Change> {
        plan.changes.iter().filter(|c| c.action == action).collect()
    };
    let (gone, new) = (of(Action::Delete), of(Action::Create));
    let identity = |c: &Change, props: Option<&crate::schema::Props>| -> Option<String> {
        let schema = providers::lookup(&c.type_name)?.schema();
        let props = props?;
        let values: Option<Vec<String>> = schema
            .identity
            .iter()
            .map(|k| props.get(*k).map(|v| v.to_string()))
            .collect();
        values.filter(|v| !v.is_empty()).map(|v| v.join("/"))
    };
    let mut hints = Vec::new();
    for old in &gone {
        let same_type = |c: &&&Change| c.type_name == old.type_name;
        let candidates: Vec<&&Change> = new.iter().filter(same_type).collect();
        let lone = candidates.len() == 1 && gone.iter().filter(same_type).count() == 1;
        let was = identity(old, old.before.as_ref());
        let renamed = candidates
            .into_iter()
            .find(|c| lone || (was.is_some() && identity(c, c.after.as_ref()) == was));
        if let Some(to) = renamed {
            hints.push(format!(
                "Note: `{}` leaves the stack and `{}` of the same type ({}) comes in. If `{}` is `{}` renamed, keep the object instead of destroying it: add `moved: [{{from: {}, to: {}}}]` to the stack file (or run `stackctl state mv {} {}`).",
                old.id, to.id, old.type_name, to.id, old.id, old.id, to.id, old.id, to.id
            ));
        }
    }
    hints
}

fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    format!(
        "Plan: {} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    )
}

/// The headline of one change (`# id (type) will be ...` and its reason),
/// and its block of attribute lines.
fn render_change(c: &Change) -> (String, String) {
    let c = &masked(c);
    let schema = providers::lookup(&c.type_name).map(|p| p.schema());
    let (symbol, headline) = match c.action {
        Action::Create => ("  +", "will be created"),
        Action::Update => ("  ~", "will be updated in place"),
        Action::Replace if c.create_first => (
            "+/-",
            "must be replaced (the new one is created first, the old one destroyed once nothing uses it)",
        ),
        Action::Replace => ("-/+", "must be replaced"),
        Action::Delete => ("  -", "will be destroyed"),
        Action::NoOp => ("   ", "is unchanged"),
    };
    let mut head = match &c.deposed {
        Some(pid) => format!(
            "  # {} ({}) deposed object {pid} {headline}\n",
            c.id, c.type_name
        ),
        None => format!("  # {} ({}) {headline}\n", c.id, c.type_name),
    };
    if let Some(reason) = &c.reason {
        let _ = writeln!(head, "  # because {reason}");
    }
    let mut out = String::new();
    // The heading names the whole address; the block, as Terraform's, the name.
    let name = crate::config::expr::local_name(&c.id);
    let _ = writeln!(out, "{symbol} resource \"{}\" \"{name}\" {{", c.type_name);
    let lines = match c.action {
        Action::Create => created_lines(c, schema),
        Action::Delete => {
            let before = c.before.iter().flatten();
            before
                .map(|(k, v)| ("-", k.clone(), render_value(v)))
                .collect()
        }
        Action::Update | Action::Replace => changed_lines(c, schema),
        Action::NoOp => Vec::new(),
    };
    let width = lines.iter().map(|(_, k, _)| k.len()).max().unwrap_or(0);
    for (sign, k, text) in lines {
        if k.is_empty() {
            let _ = writeln!(out, "        {text}");
        } else {
            let _ = writeln!(out, "      {sign} {k:width$} = {text}");
        }
    }
    out.push_str("    }\n");
    (head, out)
}

/// A plan's attribute line: (sign, name, text); no name for a comment.
type Line = (&'static str, String, String);

/// What a create sets, and the attributes known only after it.
fn created_lines(c: &Change, schema: Option<&Schema>) -> Vec<Line> {
    let after = c.after.iter().flatten();
    let mut lines: Vec<Line> = after
        .map(|(k, v)| ("+", k.clone(), render_value(v)))
        .collect();
    for a in schema.map(|s| s.attrs).unwrap_or_default() {
        if !c.after.as_ref().is_some_and(|p| p.contains_key(a.name)) {
            lines.push(("+", a.name.to_string(), "(known after apply)".into()));
        }
    }
    lines
}

/// Each changed property, old -> new, and how many others are hidden.
fn changed_lines(c: &Change, schema: Option<&Schema>) -> Vec<Line> {
    let before = c.before.clone().unwrap_or_default();
    let after = c.after.clone().unwrap_or_default();
    let mut lines = Vec::new();
    for k in &c.changed {
        let show = |v: Option<&Value>| v.map_or_else(|| "null".to_string(), render_value);
        let (old, new) = (show(before.get(k)), show(after.get(k)));
        let note = match c.replace_because.contains(k) {
            true => " # forces replacement",
            false => "",
        };
        let text = before
            .get(k)
            .zip(after.get(k))
            .and_then(|(old, new)| render_structured_change(schema, k, old, new))
            .unwrap_or_else(|| format!("{old} -> {new}"));
        lines.push(("~", k.clone(), format!("{text}{note}")));
    }
    let hidden = after.len().saturating_sub(c.changed.len());
    if hidden > 0 {
        let text = format!("# ({hidden} unchanged properties hidden)");
        lines.push((" ", String::new(), text));
    }
    lines
}

/// The largest plan comment a code review tool takes comfortably (GitHub's
/// limit is 65,536 characters).
pub const MARKDOWN_LIMIT: usize = 60_000;

/// The plan for a pull request: the summary first, one collapsible section per
/// resource with its attribute diff, the check findings at the end; beyond
/// MARKDOWN_LIMIT, the remaining resources are only counted.
pub fn render_markdown(plan: &Plan, findings: &str) -> String {
    let mut out = format!("**{}** Stack `{}`.\n\n", summary_line(plan), plan.stack);
    if !plan.has_changes() {
        out.push_str("No changes. The infrastructure matches the stack file.\n");
    }
    let drift = render_drift(plan);
    if !drift.is_empty() {
        let _ = write!(out, "```\n{}```\n\n", drift.trim_end());
    }
    for hint in rename_hints(plan) {
        let _ = write!(out, "> {hint}\n\n");
    }
    let changes: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .collect();
    let tail = if findings.is_empty() {
        String::new()
    } else {
        format!("\n### `stackctl check`\n\n{findings}")
    };
    for (n, c) in changes.iter().enumerate() {
        let (head, block) = render_change(c);
        let title = head
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .trim_start_matches("# ");
        let mut section = format!("<details><summary><code>{title}</code></summary>\n\n");
        for reason in head.lines().skip(1) {
            let _ = writeln!(section, "{}\n", reason.trim().trim_start_matches("# "));
        }
        section.push_str("```diff\n");
        for line in block.lines().map(str::trim_start) {
            // A diff highlights - and + lines: a one-line change becomes both.
            match line.strip_prefix("~ ").and_then(|l| l.split_once(" = ")) {
                Some((name, change)) if change.contains(" -> ") => {
                    let (old, new) = change.split_once(" -> ").unwrap_or_default();
                    let _ = writeln!(section, "- {name} = {old}\n+ {name} = {new}");
                }
                _ => {
                    let _ = writeln!(section, "{line}");
                }
            }
        }
        section.push_str("```\n\n</details>\n\n");
        // Room is kept for the line that says what was left out.
        if out.len() + section.len() + tail.len() + 200 > MARKDOWN_LIMIT {
            let _ = writeln!(
                out,
                "…and {} more resource change(s), left out to keep this comment under {MARKDOWN_LIMIT} characters: run `stackctl plan` to see them all.",
                changes.len() - n
            );
            break;
        }
        out.push_str(&section);
    }
    out.push_str(&tail);
    out
}

//! A YAML tree that remembers where every node came from.
//!
//! serde_yaml (archived upstream) and its forks only report positions for syntax
//! errors; stackctl must name the line of any bad property, so it builds its own
//! tree from yaml-rust2's marked event stream.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based line and column in the stack file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys are kept in file order; duplicates are rejected while loading.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a map",
        }
    }

    /// Plain JSON view of the node (references left as text).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::from(*i),
            NodeKind::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            NodeKind::Str(s) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.key_text(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A node that stands for this JSON value as it is (a `${` in its text
    /// is not a reference), placed at `span`, where what it replaces was
    /// written.
    pub fn literal(v: &serde_json::Value, span: Span) -> Node {
        use serde_json::Value;
        let kind = match v {
            Value::Null => NodeKind::Null,
            Value::Bool(b) => NodeKind::Bool(*b),
            Value::Number(n) => n.as_i64().map_or_else(
                || NodeKind::Float(n.as_f64().unwrap_or_default()),
                NodeKind::Int,
            ),
            Value::String(s) => NodeKind::Str(s.replace("${", "$${")),
            Value::Array(items) => {
                NodeKind::Seq(items.iter().map(|i| Node::literal(i, span)).collect())
            }
            Value::Object(m) => NodeKind::Map(
                m.iter()
                    .map(|(k, v)| {
                        let key = Node {
                            kind: NodeKind::Str(k.clone()),
                            span,
                        };
                        (key, Node::literal(v, span))
                    })
                    .collect(),
            ),
        };
        Node { kind, span }
    }

    /// A map key as text: YAML allows `1: x`, JSON and AWS want strings. A
    /// list or map as a key is refused while loading.
    pub fn key_text(&self) -> String {
        match &self.kind {
            NodeKind::Str(s) => s.clone(),
            NodeKind::Int(i) => i.to_string(),
            NodeKind::Bool(b) => b.to_string(),
            NodeKind::Float(f) => f.to_string(),
            NodeKind::Null => "null".to_string(),
            NodeKind::Seq(_) | NodeKind::Map(_) => "<complex key>".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (line {}, column {})", span.line, span.col)]
pub struct YamlError {
    pub message: String,
    pub span: Span,
}

fn span_of(mark: Marker) -> Span {
    Span {
        line: mark.line(),
        col: mark.col() + 1,
    }
}

/// The largest stack file read: a 10,000-resource stack is about 3 MB.
pub const MAX_FILE_BYTES: usize = 16 << 20;
/// How deep maps and lists may nest (a stack file needs a handful of levels).
pub const MAX_DEPTH: usize = 100;
/// How many values the document may hold once aliases are expanded: an alias
/// bomb ("billion laughs") is refused here, in bounded memory.
pub const MAX_VALUES: usize = 2_000_000;

/// A map or list being read: its items, where it started, its anchor, and the
/// count of values read when it started (to size it for its aliases).
enum Frame {
    Seq(Vec<Node>, Span, usize, usize),
    /// Entries, the key waiting for its value, the lines of the scalar keys
    /// seen (duplicates found without a scan: a map of 10,000 resources
    /// would otherwise compare 50 million pairs), span, anchor, start.
    Map(
        Vec<(Node, Node)>,
        Option<Node>,
        HashMap<ScalarKey, usize>,
        Span,
        usize,
        usize,
    ),
}

/// A scalar key as the map compares it (`1` and `"1"` differ).
#[derive(PartialEq, Eq, Hash)]
enum ScalarKey {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
}

impl ScalarKey {
    fn of(kind: &NodeKind) -> Option<ScalarKey> {
        Some(match kind {
            NodeKind::Null => ScalarKey::Null,
            NodeKind::Bool(b) => ScalarKey::Bool(*b),
            NodeKind::Int(i) => ScalarKey::Int(*i),
            NodeKind::Float(f) => ScalarKey::Float(f.to_bits()),
            NodeKind::Str(s) => ScalarKey::Str(s.clone()),
            NodeKind::Seq(_) | NodeKind::Map(_) => return None,
        })
    }
}

struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    /// Anchored nodes and how many values each holds.
    anchors: HashMap<usize, (Node, usize)>,
    /// Values read so far, aliases counted at their full size.
    values: usize,
    error: Option<YamlError>,
}

impl Builder {
    fn fail(&mut self, message: String, span: Span) {
        if self.error.is_none() {
            self.error = Some(YamlError { message, span });
        }
    }

    /// Counts `n` more values; false (and an error) past the limit.
    fn count(&mut self, n: usize, span: Span) -> bool {
        self.values = self.values.saturating_add(n);
        if self.values > MAX_VALUES {
            self.fail(
                format!("the document expands to more than {MAX_VALUES} values (aliases included): refused, as an alias bomb would be"),
                span,
            );
            return false;
        }
        true
    }

    fn push_value(&mut self, node: Node, anchor: usize, size: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, pending_key, seen, ..)) => match pending_key.take() {
                None => {
                    let key = ScalarKey::of(&node.kind);
                    let complex = key.is_none();
                    let duplicate = key.and_then(|key| seen.insert(key, node.span.line));
                    let (text, span) = (node.key_text(), node.span);
                    *pending_key = Some(node);
                    if complex {
                        // JSON, and so every AWS property, has text keys only.
                        self.fail(
                            "a map key must be one value (text, a number, true/false or null), not a list or a map".into(),
                            span,
                        );
                    } else if let Some(line) = duplicate {
                        self.fail(
                            format!("duplicate key `{text}` (first defined on line {line})"),
                            span,
                        );
                    }
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return; // the first problem is the one reported; the rest is skipped
        }
        let span = span_of(mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                if !self.count(1, span) {
                    return;
                }
                let kind = if style == TScalarStyle::Plain {
                    plain_scalar(&text)
                } else {
                    NodeKind::Str(text)
                };
                self.push_value(Node { kind, span }, anchor, 1);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(
                        format!("maps and lists nest deeper than {MAX_DEPTH} levels"),
                        span,
                    );
                    return;
                }
                if !self.count(1, span) {
                    return;
                }
                let start = self.values;
                self.stack.push(match ev {
                    Event::SequenceStart(..) => Frame::Seq(Vec::new(), span, anchor, start),
                    _ => Frame::Map(Vec::new(), None, HashMap::new(), span, anchor, start),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (kind, span, anchor, start) = match self.stack.pop() {
                    Some(Frame::Seq(items, span, anchor, start)) => {
                        (NodeKind::Seq(items), span, anchor, start)
                    }
                    Some(Frame::Map(entries, _, _, span, anchor, start)) => {
                        (NodeKind::Map(entries), span, anchor, start)
                    }
                    None => return,
                };
                let size = self.values - start + 1;
                self.push_value(Node { kind, span }, anchor, size);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some((mut node, size)) => {
                    if !self.count(size, span) {
                        return;
                    }
                    node.span = span;
                    self.push_value(node, 0, size);
                }
                None => self.fail("unknown alias".into(), span),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// YAML 1.2 core schema for plain (unquoted) scalars.
fn plain_scalar(text: &str) -> NodeKind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
        "true" | "True" | "TRUE" => return NodeKind::Bool(true),
        "false" | "False" | "FALSE" => return NodeKind::Bool(false),
        _ => {}
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i64>() {
            return NodeKind::Int(i);
        }
    }
    let looks_numeric = unsigned
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if looks_numeric {
        if let Ok(f) = text.parse::<f64>() {
            return NodeKind::Float(f);
        }
    }
    NodeKind::Str(text.to_string())
}

/// What to do when a reference stands unquoted in a flow list or map
/// (`[${a.arn}]`): YAML reads `{` there as the start of a map.
fn flow_hint(source: &str, line: usize) -> &'static str {
    let text = source
        .lines()
        .nth(line.saturating_sub(1))
        .unwrap_or_default();
    let unquoted = ["[${", "{${", ", ${", ",${", ": ${"]
        .iter()
        .any(|p| text.contains(p));
    match unquoted && (text.contains('[') || text.contains('{')) {
        true => " (a `${...}` inside `[...]` or `{...}` must be quoted, `[\"${a.arn}\"]`, or written as a block list, one `- ${a.arn}` per line)",
        false => "",
    }
}

/// Parses one YAML document. An empty file yields a null node. Any input is
/// an answer in time and memory bounded by its size: no panic, no blow-up.
pub fn parse(source: &str) -> Result<Node, YamlError> {
    if source.len() > MAX_FILE_BYTES {
        return Err(YamlError {
            message: format!(
                "the file is {} MB; stack files are limited to {} MB",
                source.len() >> 20,
                MAX_FILE_BYTES >> 20
            ),
            span: Span { line: 1, col: 1 },
        });
    }
    let mut builder = Builder {
        stack: Vec::new(),
        docs: Vec::new(),
        anchors: HashMap::new(),
        values: 0,
        error: None,
    };
    let mut parser = Parser::new_from_str(source);
    parser.load(&mut builder, true).map_err(|e| {
        let span = span_of(*e.marker());
        let message = if e.info().contains("recursion limit") {
            format!("maps and lists nest deeper than {MAX_DEPTH} levels")
        } else {
            format!(
                "malformed YAML: {}{}",
                e.info(),
                flow_hint(source, span.line)
            )
        };
        YamlError { message, span }
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    let mut docs = builder.docs.into_iter();
    let first = docs.next().unwrap_or(Node {
        kind: NodeKind::Null,
        span: Span { line: 1, col: 1 },
    });
    if let Some(extra) = docs.next() {
        return Err(YamlError {
            message: "a stack file holds one YAML document; remove the extra `---` document".into(),
            span: extra.span,
        });
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unquoted_reference_in_a_flow_list_says_to_quote_it() {
        let err = parse("a:\n  actions: [${t.arn}]\n").unwrap_err();
        assert_contains!(err.message, "must be quoted, `[\"${a.arn}\"]`");
        assert_eq!(err.span.line, 2);
        let other = parse("a: [b\n").unwrap_err();
        assert!(
            !other.message.contains("must be quoted"),
            "{}",
            other.message
        );
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let doc = parse("a: 1\nb: '1'\nc: true\nd: 1.5\ne: ~\nf: text\ng: -7\nh: 1e3\n").unwrap();
        let get = |k| doc.get(k).unwrap().kind.clone();
        assert_eq!(get("a"), NodeKind::Int(1));
        assert_eq!(get("b"), NodeKind::Str("1".into()));
        assert_eq!(get("c"), NodeKind::Bool(true));
        assert_eq!(get("d"), NodeKind::Float(1.5));
        assert_eq!(get("e"), NodeKind::Null);
        assert_eq!(get("f"), NodeKind::Str("text".into()));
        assert_eq!(get("g"), NodeKind::Int(-7));
        assert_eq!(get("h"), NodeKind::Float(1000.0));
    }

    #[test]
    fn nodes_carry_their_line() {
        let doc = parse("top:\n  inner:\n    - x\n    - y: 2\n").unwrap();
        let inner = doc.get("top").unwrap().get("inner").unwrap();
        let NodeKind::Seq(items) = &inner.kind else {
            panic!("not a list")
        };
        assert_eq!(items[0].span.line, 3);
        assert_eq!(items[1].get("y").unwrap().span.line, 4);
    }

    #[test]
    fn syntax_error_names_the_line() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.message.starts_with("malformed YAML"), "{err}");
        assert!(err.span.line >= 2, "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_lines() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.span.line, 3);
        assert!(err.message.contains("first defined on line 1"), "{err}");
    }

    #[test]
    fn keys_of_different_kinds_are_different_keys() {
        assert!(parse("1: a\n\"1\": b\ntrue: c\n\"true\": d\n~: e\n1.5: f\n").is_ok());
        assert_eq!(parse("x: 0\n1: a\n1: b\n").unwrap_err().span.line, 3);
        assert_eq!(parse("1.5: a\n1.5: b\n").unwrap_err().span.line, 2);
    }

    #[test]
    fn a_list_or_map_as_a_key_is_refused_with_its_line() {
        let err = parse("tags:\n  ? [x, y]\n  : 1\n").unwrap_err();
        assert_eq!(err.span.line, 2, "{err:?}");
        assert!(err.message.contains("not a list or a map"), "{err}");
        assert_eq!(parse("tags: {{a: 1}: 2}\n").unwrap_err().span.line, 1);
    }

    #[test]
    fn an_alias_bomb_is_refused_at_the_line_that_crosses_the_limit() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, prev) in ('b'..='j').zip('a'..='i') {
            let refs = vec![format!("*{prev}"); 10].join(", ");
            bomb.push_str(&format!("{i}: &{i} [{refs}]\n"));
        }
        let err = parse(&bomb).unwrap_err();
        assert!(err.message.contains("more than 2000000 values"), "{err}");
        assert!((6..=8).contains(&err.span.line), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let block: String = (0..300).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        for deep in [flow, block] {
            let err = parse(&deep).unwrap_err();
            assert!(err.message.contains("deeper than 100 levels"), "{err}");
        }
    }

    #[test]
    fn a_file_beyond_the_size_limit_is_refused_before_parsing() {
        let big = "# padding\n".repeat(MAX_FILE_BYTES / 10 + 1);
        let err = parse(&big).unwrap_err();
        assert!(
            err.message.contains("stack files are limited to 16 MB"),
            "{err}"
        );
    }

    #[test]
    fn aliases_are_expanded() {
        let doc = parse("base: &b {x: 1}\ncopy: *b\n").unwrap();
        assert_eq!(
            doc.get("copy").unwrap().get("x").unwrap().kind,
            NodeKind::Int(1)
        );
    }
}

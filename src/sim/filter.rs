//! CloudWatch Logs filter patterns with AWS's semantics
//! (`../shared/spec/metric-filters.md`): terms (`?` alternatives, `-`
//! exclusions, quoted phrases), `%regex%`, JSON patterns and space-delimited
//! patterns with named fields, `...` and conditions; and what a metric filter
//! publishes for a matching event.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

#[derive(Debug, Clone)]
pub enum Pattern {
    /// An empty pattern matches every event.
    All,
    Terms(Vec<Term>),
    Regex(Regex),
    Json(Json),
    Fields(Vec<Field>),
}

#[derive(Debug, Clone)]
pub struct Term {
    pub kind: TermKind,
    pub text: String,
    /// A quoted phrase matches as a substring; a word only as a whole word.
    pub phrase: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TermKind {
    Required,
    Optional,
    Excluded,
}

#[derive(Debug, Clone)]
pub enum Json {
    Or(Box<Json>, Box<Json>),
    And(Box<Json>, Box<Json>),
    Compare(Vec<Step>, Op, Literal),
    IsNull(Vec<Step>),
    IsBool(Vec<Step>, bool),
    NotExists(Vec<Step>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
pub enum Literal {
    /// Text, with `*` wildcards.
    Text(String),
    Number(f64),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub enum Field {
    /// `...`: any number of fields.
    Rest,
    /// A named field and the conditions on it (`||` or `&&` between them).
    Named {
        name: String,
        conditions: Vec<(Op, Literal)>,
        any: bool,
    },
}

fn bad(message: impl Into<String>) -> String {
    message.into()
}

/// Parses a filter pattern as PutMetricFilter would accept it.
pub fn parse(pattern: &str) -> Result<Pattern, String> {
    let p = pattern.trim();
    if p.is_empty() || p == "\" \"" {
        return Ok(Pattern::All);
    }
    if p.len() > 1024 {
        return Err(bad("a filter pattern is at most 1024 characters"));
    }
    match p.as_bytes()[0] {
        b'{' => {
            let inner = p
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| bad("a JSON pattern is `{ $.field = value }`: missing `}`"))?;
            let mut parser = JsonParser { s: inner, pos: 0 };
            let expr = parser.disjunction()?;
            parser.skip_ws();
            if parser.pos < parser.s.len() {
                return Err(format!(
                    "unexpected `{}` in the JSON pattern",
                    &parser.s[parser.pos..]
                ));
            }
            Ok(Pattern::Json(expr))
        }
        b'[' => {
            let inner = p
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .ok_or_else(|| bad("a space-delimited pattern is `[field, ...]`: missing `]`"))?;
            Ok(Pattern::Fields(fields(inner)?))
        }
        b'%' if p.len() > 1 && p.ends_with('%') => Ok(Pattern::Regex(regex(&p[1..p.len() - 1])?)),
        _ => Ok(Pattern::Terms(terms(p)?)),
    }
}

fn regex(body: &str) -> Result<Regex, String> {
    if body.contains('(') || body.contains(')') {
        return Err(bad("a %regex% may not use parentheses (no groups)"));
    }
    Regex::new(body).map_err(|e| format!("bad regular expression `{body}`: {e}"))
}

fn terms(p: &str) -> Result<Vec<Term>, String> {
    let mut out = Vec::new();
    let mut rest = p.trim_start();
    while !rest.is_empty() {
        let (kind, after) = match rest.as_bytes()[0] {
            b'?' => (TermKind::Optional, &rest[1..]),
            b'-' => (TermKind::Excluded, &rest[1..]),
            _ => (TermKind::Required, rest),
        };
        let (text, phrase, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| bad("a quoted phrase is missing its closing `\"`"))?;
            (q[..end].to_string(), true, &q[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), false, &after[end..])
        };
        if text.is_empty() && !phrase {
            return Err(bad("a `?` or `-` must be followed by a term"));
        }
        out.push(Term { kind, text, phrase });
        rest = tail.trim_start();
    }
    Ok(out)
}

/// A comparison value: `"quoted"`, a bare word or number, `*` wildcards, `%regex%`.
fn literal(text: &str) -> Result<Literal, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("a comparison needs a value"));
    }
    if t.len() >= 2 && t.starts_with('%') && t.ends_with('%') {
        return Ok(Literal::Regex(regex(&t[1..t.len() - 1])?));
    }
    if let Some(q) = t.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        return Ok(Literal::Text(q.to_string()));
    }
    match t.parse::<f64>() {
        Ok(n) if !t.contains('*') => Ok(Literal::Number(n)),
        _ => Ok(Literal::Text(t.to_string())),
    }
}

fn op_at(s: &str) -> Option<(Op, usize)> {
    [
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .into_iter()
    .find(|(t, _)| s.starts_with(t))
    .map(|(t, op)| (op, t.len()))
}

fn fields(inner: &str) -> Result<Vec<Field>, String> {
    inner
        .split(',')
        .map(|f| {
            let f = f.trim();
            if f == "..." {
                return Ok(Field::Rest);
            }
            if f.is_empty() {
                return Err(bad("an empty field in a space-delimited pattern"));
            }
            let name_end = f
                .find(|c: char| "=!<>".contains(c) || c.is_whitespace())
                .unwrap_or(f.len());
            let name = f[..name_end].to_string();
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "field name `{name}` may hold only letters, digits and `_`"
                ));
            }
            let mut conditions = Vec::new();
            let mut any = false;
            let mut rest = f[name_end..].trim();
            while !rest.is_empty() {
                let (op, len) = op_at(rest)
                    .ok_or_else(|| format!("`{rest}`: expected =, !=, <, <=, > or >="))?;
                rest = rest[len..].trim_start();
                let next = ["&&", "||"]
                    .iter()
                    .filter_map(|j| rest.find(j).map(|i| (i, *j)))
                    .min();
                let (value, tail) = match next {
                    Some((i, joiner)) => {
                        any |= joiner == "||";
                        let tail = rest[i + 2..].trim_start();
                        // The chain names this field again: `status = 404 || status = 410`.
                        let tail = tail
                            .strip_prefix(name.as_str())
                            .unwrap_or(tail)
                            .trim_start();
                        (&rest[..i], tail)
                    }
                    None => (rest, ""),
                };
                conditions.push((op, literal(value)?));
                rest = tail;
            }
            Ok(Field::Named {
                name,
                conditions,
                any,
            })
        })
        .collect()
}

struct JsonParser<'a> {
    s: &'a str,
    pos: usize,
}

impl JsonParser<'_> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.s[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn disjunction(&mut self) -> Result<Json, String> {
        let mut left = self.conjunction()?;
        while self.eat("||") {
            left = Json::Or(Box::new(left), Box::new(self.conjunction()?));
        }
        Ok(left)
    }

    fn conjunction(&mut self) -> Result<Json, String> {
        let mut left = self.unit()?;
        while self.eat("&&") {
            left = Json::And(Box::new(left), Box::new(self.unit()?));
        }
        Ok(left)
    }

    fn unit(&mut self) -> Result<Json, String> {
        if self.eat("(") {
            let inner = self.disjunction()?;
            if !self.eat(")") {
                return Err(bad("a `(` in the JSON pattern is not closed"));
            }
            return Ok(inner);
        }
        let path = self.selector()?;
        if self.eat("IS") {
            return if self.eat("NULL") {
                Ok(Json::IsNull(path))
            } else if self.eat("TRUE") {
                Ok(Json::IsBool(path, true))
            } else if self.eat("FALSE") {
                Ok(Json::IsBool(path, false))
            } else {
                Err(bad("`IS` is followed by NULL, TRUE or FALSE"))
            };
        }
        if self.eat("NOT") {
            return if self.eat("EXISTS") {
                Ok(Json::NotExists(path))
            } else {
                Err(bad("`NOT` is followed by EXISTS"))
            };
        }
        self.skip_ws();
        let (op, len) = op_at(&self.s[self.pos..])
            .ok_or_else(|| bad("expected a comparison (=, !=, <, <=, >, >=), IS or NOT EXISTS"))?;
        self.pos += len;
        self.skip_ws();
        let rest = &self.s[self.pos..];
        let end = if let Some(quoted) = rest.strip_prefix('"') {
            quoted
                .find('"')
                .map(|i| i + 2)
                .ok_or_else(|| bad("a quoted value is not closed"))?
        } else if let Some(regex) = rest.strip_prefix('%') {
            regex
                .find('%')
                .map(|i| i + 2)
                .ok_or_else(|| bad("a %regex% is not closed"))?
        } else {
            rest.find(|c: char| c.is_whitespace() || c == ')' || c == '&' || c == '|')
                .unwrap_or(rest.len())
        };
        let value = literal(&rest[..end])?;
        self.pos += end;
        Ok(Json::Compare(path, op, value))
    }

    fn selector(&mut self) -> Result<Vec<Step>, String> {
        self.skip_ws();
        if !self.eat("$") {
            return Err(bad(
                "a JSON condition starts with a selector such as $.field",
            ));
        }
        let mut steps = Vec::new();
        loop {
            let rest = &self.s[self.pos..];
            if let Some(r) = rest.strip_prefix('.') {
                let end = r
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                    .unwrap_or(r.len());
                if end == 0 {
                    return Err(bad("a `.` in a selector must be followed by a key"));
                }
                steps.push(Step::Key(r[..end].to_string()));
                self.pos += 1 + end;
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r
                    .find(']')
                    .ok_or_else(|| bad("a `[` in a selector is not closed"))?;
                let index = r[..end]
                    .trim()
                    .parse()
                    .map_err(|_| bad("an array index is a number"))?;
                steps.push(Step::Index(index));
                self.pos += end + 2;
            } else {
                break;
            }
        }
        if steps.is_empty() {
            return Err(bad("a selector names a field: $.field"));
        }
        Ok(steps)
    }
}

/// `*` in `pattern` matches any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !text.starts_with(part) {
                return false;
            }
            pos = part.len();
        } else if i == parts.len() - 1 {
            return text.len() >= pos + part.len() && text.ends_with(part);
        } else {
            match text[pos..].find(part) {
                Some(at) => pos += at + part.len(),
                None => return false,
            }
        }
    }
    true
}

/// Compares a scalar event value with a literal.
fn compare(have: &str, op: Op, want: &Literal) -> bool {
    match want {
        Literal::Regex(r) => {
            let hit = r.is_match(have);
            match op {
                Op::Eq => hit,
                Op::Ne => !hit,
                _ => false,
            }
        }
        Literal::Number(n) => match have.trim().parse::<f64>() {
            Ok(h) => match op {
                Op::Eq => h == *n,
                Op::Ne => h != *n,
                Op::Lt => h < *n,
                Op::Le => h <= *n,
                Op::Gt => h > *n,
                Op::Ge => h >= *n,
            },
            Err(_) => op == Op::Ne,
        },
        Literal::Text(t) => match op {
            Op::Eq => wildcard(t, have),
            Op::Ne => !wildcard(t, have),
            _ => false,
        },
    }
}

fn select<'a>(v: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Key(k) => v.get(k),
        Step::Index(i) => v.get(i),
    })
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn eval_json(e: &Json, doc: &Value) -> bool {
    match e {
        Json::Or(a, b) => eval_json(a, doc) || eval_json(b, doc),
        Json::And(a, b) => eval_json(a, doc) && eval_json(b, doc),
        Json::IsNull(p) => select(doc, p).is_some_and(Value::is_null),
        Json::IsBool(p, b) => select(doc, p) == Some(&Value::Bool(*b)),
        Json::NotExists(p) => select(doc, p).is_none(),
        Json::Compare(p, op, want) => {
            let Some(have) = select(doc, p).and_then(scalar_text) else {
                return false;
            };
            if let (Literal::Text(t), Op::Eq) = (want, op) {
                if t == "*" {
                    return true; // exists, with any scalar value
                }
            }
            compare(&have, *op, want)
        }
    }
}

fn selectors(e: &Json, out: &mut Vec<Vec<Step>>) {
    match e {
        Json::Or(a, b) | Json::And(a, b) => {
            selectors(a, out);
            selectors(b, out);
        }
        Json::Compare(p, ..) | Json::IsNull(p) | Json::IsBool(p, _) | Json::NotExists(p) => {
            out.push(p.clone())
        }
    }
}

fn path_text(p: &[Step]) -> String {
    let mut s = String::from("$");
    for step in p {
        match step {
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The fields of a space-delimited event: runs of spaces separate them; a
/// run in "..." or [...] is one field, without its delimiters.
fn split_fields(message: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = message.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let close = match c {
            '"' => Some('"'),
            '[' => Some(']'),
            _ => None,
        };
        let mut field = String::new();
        if let Some(close) = close {
            chars.next();
            for c in chars.by_ref() {
                if c == close {
                    break;
                }
                field.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        out.push(field);
    }
    out
}

fn match_fields(pattern: &[Field], event: &[String], got: &mut BTreeMap<String, String>) -> bool {
    let Some((first, rest)) = pattern.split_first() else {
        return event.is_empty();
    };
    match first {
        Field::Rest => (0..=event.len()).any(|skip| {
            let mut attempt = got.clone();
            let ok = match_fields(rest, &event[skip..], &mut attempt);
            if ok {
                *got = attempt;
            }
            ok
        }),
        Field::Named {
            name,
            conditions,
            any,
        } => {
            let Some((value, remaining)) = event.split_first() else {
                return false;
            };
            let holds = |(op, lit): &(Op, Literal)| compare(value, *op, lit);
            let ok = conditions.is_empty()
                || if *any {
                    conditions.iter().any(holds)
                } else {
                    conditions.iter().all(holds)
                };
            if !ok {
                return false;
            }
            got.insert(format!("${name}"), value.clone());
            match_fields(rest, remaining, got)
        }
    }
}

/// Whether `word` occurs in `text` as a whole word (no letter or digit on
/// either side).
fn has_word(text: &str, word: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    text.match_indices(word).any(|(at, _)| {
        !alnum(text[..at].chars().next_back()) && !alnum(text[at + word.len()..].chars().next())
    })
}

/// The values extracted from a matching event (`$name`, `$.path`), or None
/// when it does not match.
pub fn matches(pattern: &Pattern, message: &str) -> Option<BTreeMap<String, String>> {
    match pattern {
        Pattern::All => Some(BTreeMap::new()),
        Pattern::Regex(r) => r.is_match(message).then(BTreeMap::new),
        Pattern::Terms(terms) => {
            let present = |t: &Term| {
                if t.phrase {
                    message.contains(&t.text)
                } else {
                    has_word(message, &t.text)
                }
            };
            let required = terms
                .iter()
                .filter(|t| t.kind == TermKind::Required)
                .all(present);
            let excluded = terms
                .iter()
                .filter(|t| t.kind == TermKind::Excluded)
                .any(present);
            let optional: Vec<&Term> = terms
                .iter()
                .filter(|t| t.kind == TermKind::Optional)
                .collect();
            let one_of = optional.is_empty() || optional.iter().any(|t| present(t));
            (required && !excluded && one_of).then(BTreeMap::new)
        }
        Pattern::Json(expr) => {
            let doc: Value = serde_json::from_str(message).ok()?;
            if !doc.is_object() || !eval_json(expr, &doc) {
                return None;
            }
            let mut paths = Vec::new();
            selectors(expr, &mut paths);
            Some(
                paths
                    .iter()
                    .filter_map(|p| Some((path_text(p), select(&doc, p).and_then(scalar_text)?)))
                    .collect(),
            )
        }
        Pattern::Fields(fields) => {
            let event = split_fields(message);
            let mut got = BTreeMap::new();
            match_fields(fields, &event, &mut got).then_some(got)
        }
    }
}

/// The value a metric filter publishes for a matching event: a literal, or
/// the extracted field it names. None when the field is missing or not a
/// number (no datapoint for that event).
pub fn metric_value(
    value: &str,
    extracted: &BTreeMap<String, String>,
    message: &str,
) -> Option<f64> {
    let v = value.trim();
    if let Ok(n) = v.parse::<f64>() {
        return Some(n);
    }
    if let Some(path) = v.strip_prefix("$.") {
        let doc: Value = serde_json::from_str(message).ok()?;
        let steps: Vec<Step> = path.split('.').map(|k| Step::Key(k.to_string())).collect();
        return select(&doc, &steps).and_then(scalar_text)?.parse().ok();
    }
    extracted.get(v)?.parse().ok()
}

/// One match in the shape AWS's TestMetricFilter answers.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestMatch {
    pub event_number: usize,
    pub event_message: String,
    pub extracted_values: BTreeMap<String, String>,
}

/// What TestMetricFilter answers for these lines: the matching ones, numbered
/// from 1, with their extracted values.
pub fn test(pattern: &Pattern, lines: &[String]) -> Vec<TestMatch> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            Some(TestMatch {
                event_number: i + 1,
                event_message: line.clone(),
                extracted_values: matches(pattern, line)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(pattern: &str, lines: &[&str]) -> Vec<usize> {
        let p = parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| matches(&p, l).is_some())
            .map(|(i, _)| i)
            .collect()
    }

    const LOGS: &[&str] = &[
        "[ERROR 400] BAD REQUEST",
        "[ERROR 419] MISSING ARGUMENTS",
        "[INFO] ok",
    ];

    #[test]
    fn terms_follow_the_documented_examples() {
        assert_eq!(hits("ERROR", LOGS), [0, 1]);
        assert_eq!(hits("ERROR ARGUMENTS", LOGS), [1]);
        assert_eq!(hits("?ARGUMENTS ?INFO", LOGS), [1, 2]);
        assert_eq!(hits("ERROR -ARGUMENTS", LOGS), [0]);
        assert_eq!(hits("\"BAD REQUEST\"", LOGS), [0]);
        assert!(hits("error", LOGS).is_empty(), "case-sensitive");
        assert_eq!(hits("\" \"", LOGS), [0, 1, 2]);
        assert_eq!(hits("", LOGS), [0, 1, 2]);
        assert!(hits("ERRORS", &["[ERROR 400]"]).is_empty(), "whole words");
        assert_eq!(
            hits(
                "High response time",
                &["High response time for /api/data: 3500 ms"]
            ),
            [0]
        );
    }

    #[test]
    fn regex_patterns_search_unanchored_without_groups() {
        assert_eq!(
            hits(
                "%AUTHORIZED%",
                &["UNAUTHORIZED REQUEST", "AUTHORIZED REQUEST", "nope"]
            ),
            [0, 1]
        );
        assert_eq!(
            hits(
                "%\\d{4} ms%",
                &["High response time for /api/data: 3500 ms", "took 35 ms"]
            ),
            [0]
        );
        assert!(parse("%(a|b)%").unwrap_err().contains("parentheses"));
    }

    const JSON_EVENT: &str = r#"{"eventType":"UpdateTrail","sourceIPAddress":"111.111.111.111","arrayKey":["value","another value"],"objectList":[{"name":"a","id":1},{"name":"b","id":2}],"SomeObject":null,"latency":50}"#;

    #[test]
    fn json_patterns_follow_the_documented_examples() {
        for (pattern, expected) in [
            (r#"{ $.eventType = "UpdateTrail" }"#, true),
            ("{ $.eventType = Update* }", true),
            ("{ $.sourceIPAddress != 123.123.* }", true),
            (r#"{ $.arrayKey[0] = "value" }"#, true),
            ("{ $.objectList[1].id = 2 }", true),
            ("{ $.objectList[1].id > 2 }", false),
            ("{ $.SomeObject IS NULL }", true),
            ("{ $.SomeOtherObject NOT EXISTS }", true),
            ("{ $.objectList = * }", false),
            (
                r#"{ ($.latency > 40) && ($.eventType = "UpdateTrail") }"#,
                true,
            ),
            (
                r#"{ $.latency > 40 && $.eventType = "X" || $.arrayKey[1] = "another value" }"#,
                true,
            ),
            (
                r#"{ ($.latency > 40 || $.arrayKey[1] = "x") && $.eventType = "X" }"#,
                false,
            ),
        ] {
            assert_eq!(
                hits(pattern, &[JSON_EVENT]).len() == 1,
                expected,
                "{pattern}"
            );
        }
        assert!(hits("{ $.latency > 1 }", &["not json"]).is_empty());
        let p = parse("{ $.latency > 40 }").unwrap();
        assert_eq!(matches(&p, JSON_EVENT).unwrap()["$.latency"], "50");
    }

    const APACHE: &str =
        r#"127.0.0.1 Prod frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 404 1534"#;

    #[test]
    fn space_delimited_patterns_follow_the_documented_examples() {
        let p = parse("[ip, user, username, timestamp, request =*.html*, status_code = 4*, bytes]")
            .unwrap();
        let got = matches(&p, APACHE).unwrap();
        assert_eq!(got["$timestamp"], "10/Oct/2000:13:25:15 -0700");
        assert_eq!(got["$request"], "GET /index.html HTTP/1.0");
        assert_eq!(got["$bytes"], "1534");
        for (pattern, expected) in [
            ("[..., request =*.html*, status_code = 4*, bytes]", true),
            ("[ip, server, username, timestamp, request, status_code, bytes > 1000]", true),
            ("[ip, server, username, timestamp, request, status_code, bytes > 2000]", false),
            ("[w1=ERROR, w2]", false),
            ("[ip, rest]", false),
            ("[ip, user, username, timestamp, request, status_code = 404 || status_code = 410, bytes]", true),
            ("[ip, user, username, timestamp, request, status_code = 500 || status_code = 410, bytes]", false),
        ] {
            assert_eq!(hits(pattern, &[APACHE]).len() == 1, expected, "{pattern}");
        }
    }

    #[test]
    fn the_seed_stacks_filter_counts_slow_responses_only() {
        let p =
            parse("[w1=High, w2=response, w3=time, w4=for, endpoint, response_time>3000, unit=ms]")
                .unwrap();
        let slow = "High response time for /api/data: 3500 ms";
        let got = matches(&p, slow).unwrap();
        assert_eq!(got["$response_time"], "3500");
        assert!(matches(&p, "High response time for /api/data: 2500 ms").is_none());
        assert!(matches(&p, "Low response time for /api/data: 3500 ms").is_none());
        assert_eq!(metric_value("1", &got, slow), Some(1.0));
        assert_eq!(metric_value("$response_time", &got, slow), Some(3500.0));
        let p = parse("[..., rt > 3000, unit = ms]").unwrap();
        assert_eq!(matches(&p, slow).unwrap()["$rt"], "3500");
    }

    #[test]
    fn test_answers_like_test_metric_filter() {
        let p = parse("ERROR").unwrap();
        let lines: Vec<String> = LOGS.iter().map(|s| s.to_string()).collect();
        let got = test(&p, &lines);
        assert_eq!(
            got.iter().map(|m| m.event_number).collect::<Vec<_>>(),
            [1, 2]
        );
        let j = serde_json::to_value(&got[0]).unwrap();
        assert_eq!(j["eventMessage"], "[ERROR 400] BAD REQUEST");
        assert!(j["extractedValues"].is_object());
    }
}

//! Generated and mutated stack files through the parser, the reference
//! resolver, validation, planning and rendering: none may panic, whatever the
//! input. The generator writes YAML trees from the schemas (known and unknown
//! types and properties, `${...}` references to resources, attributes and
//! variables that may or may not exist, anchors and aliases, sensitive
//! variables) and then mutates a share of them byte by byte.
//!
//! CI runs a short run; `scripts/fuzz [CASES]` runs as many as asked
//! (docs/reliability.md has the figures).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Map;

use crate::config::Stack;
use crate::model::StackValues;
use crate::plan;
use crate::providers;
use crate::rng::Rng;
use crate::schema::Type;
use crate::state::State;

const IDS: &[&str] = &["a", "b", "topic", "queue", "fn", "role", "sg", "x_1"];
const ATTRS: &[&str] = &["arn", "id", "name", "url", "nope", "function_name"];
const VARS: &[&str] = &["v", "secret", "n", "missing"];

fn scalar(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => format!("${{{}.{}}}", rng.pick(IDS), rng.pick(ATTRS)),
        1 => format!("\"pre-${{var.{}}}-post\"", rng.pick(VARS)),
        2 => "${stack.name}".into(),
        3 => format!("{}", rng.next() as i64 % 100_000),
        4 => "true".into(),
        5 => "~".into(),
        6 => "\"${unterminated\"".into(),
        7 => format!("{}.5", rng.below(1000)),
        8 => "'$${literal}'".into(),
        9 => "\"\\u00e9\\t\"".into(),
        10 => "*anchor".into(),
        _ => format!("word{}", rng.below(50)),
    }
}

/// A YAML value of roughly the shape `ty` wants (or deliberately not).
fn value(rng: &mut Rng, ty: Option<&Type>, depth: usize) -> String {
    if depth > 4 || rng.chance(15) {
        return scalar(rng);
    }
    match ty {
        Some(Type::List(inner)) => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|_| value(rng, Some(inner), depth + 1))
                .collect();
            format!("[{}]", items.join(", "))
        }
        Some(Type::Object(props)) => {
            let entries: Vec<String> = (0..rng.below(4))
                .map(|_| {
                    let p = rng.pick(props);
                    format!("{}: {}", p.name, value(rng, Some(&p.ty), depth + 1))
                })
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        Some(Type::StringMap) | Some(Type::Policy) | Some(Type::Json) | None => {
            let entries: Vec<String> = (0..rng.below(4))
                .map(|i| format!("k{i}: {}", value(rng, None, depth + 1)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        _ => scalar(rng),
    }
}

/// A whole stack file.
fn stack(rng: &mut Rng) -> String {
    let types: Vec<_> = providers::all().map(|p| p.schema()).collect();
    let mut s = String::from("stack: fuzz\n");
    if rng.chance(70) {
        s.push_str(
            "variables:\n  v: 1\n  n: &anchor 60\n  secret: {sensitive: true, default: hunter2}\n",
        );
    }
    s.push_str("resources:\n");
    for _ in 0..rng.below(6) {
        let schema = rng.pick(&types);
        let _ = writeln!(s, "  {}:", rng.pick(IDS));
        let type_name = if rng.chance(90) {
            schema.type_name
        } else {
            "aws_nothing"
        };
        let _ = writeln!(s, "    type: {type_name}");
        if rng.chance(20) {
            let _ = writeln!(s, "    depends_on: [{}]", rng.pick(IDS));
        }
        if rng.chance(10) {
            let _ = writeln!(
                s,
                "    sensitive: {}",
                if rng.chance(50) { "false" } else { "[A]" }
            );
        }
        s.push_str("    properties:\n");
        for _ in 0..rng.below(8) {
            if rng.chance(90) && !schema.props.is_empty() {
                let p = rng.pick(schema.props);
                let _ = writeln!(s, "      {}: {}", p.name, value(rng, Some(&p.ty), 0));
            } else {
                let _ = writeln!(s, "      unknown_{}: {}", rng.below(3), value(rng, None, 0));
            }
        }
    }
    if rng.chance(50) {
        let _ = writeln!(s, "outputs:\n  o: {}", scalar(rng));
    }
    s
}

/// Flips, drops, duplicates or inserts a few bytes.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(4) {
            0 => bytes[at] = b"{}[]:-&*!|>'\"$\n #%@`,?"[rng.below(22)],
            1 => {
                bytes.remove(at);
            }
            2 => {
                let end = (at + rng.below(40)).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                bytes.splice(at..at, chunk);
            }
            _ => bytes.insert(at, rng.below(256) as u8),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Everything stackctl does with a stack file before calling AWS.
fn exercise(text: &str) {
    let Ok(stack) = Stack::parse(Path::new("fuzz.yaml"), text) else {
        return;
    };
    let vars = [("v".to_string(), "${var.v}".to_string())];
    let Ok(v) = crate::validate::validate(stack, &vars, Some("us-east-2")) else {
        return;
    };
    let values = StackValues {
        name: "fuzz".into(),
        region: Some("us-east-2".into()),
        account_id: None,
    };
    let p = plan::make(
        &v,
        &State::new("fuzz"),
        &BTreeMap::new(),
        &BTreeMap::new(),
        &values,
    );
    let _ = plan::render(&p);
    let _ = plan::to_json(&p);
    let _ = crate::apply::outputs(
        &v,
        &State::new("fuzz"),
        &values,
        &BTreeMap::<String, Map<String, serde_json::Value>>::new(),
    );
}

/// Runs `cases` generated inputs from `seed`; the input of the first panic.
pub fn run(seed: u64, cases: u64) -> Result<u64, String> {
    let mut rng = Rng::new(seed);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut ran = 0;
    let result = loop {
        if ran == cases {
            break Ok(ran);
        }
        let mut text = stack(&mut rng);
        if rng.chance(40) {
            text = mutate(&mut rng, &text);
        }
        ran += 1;
        if std::panic::catch_unwind(|| exercise(&text)).is_err() {
            break Err(text);
        }
    };
    std::panic::set_hook(hook);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_input_panics() {
        let cases = std::env::var("STACKCTL_FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        let seed = std::env::var("STACKCTL_FUZZ_SEED")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0x5eed);
        let started = std::time::Instant::now();
        match run(seed, cases) {
            Ok(n) => eprintln!(
                "fuzz: {n} inputs from seed {seed}, no panic, {:.1}s",
                started.elapsed().as_secs_f64()
            ),
            Err(input) => panic!("panicked on input:\n{input}"),
        }
    }

    #[test]
    fn the_generator_reaches_plans() {
        // Without this the fuzzing would only exercise error paths.
        let mut rng = Rng::new(7);
        let planned = (0..2_000)
            .filter(|_| {
                let text = stack(&mut rng);
                Stack::parse(Path::new("f"), &text)
                    .ok()
                    .and_then(|s| crate::validate::validate(s, &[], Some("us-east-2")).ok())
                    .is_some()
            })
            .count();
        eprintln!("{planned} of 2000 generated stacks were valid");
        assert!(
            planned > 20,
            "only {planned} of 2000 generated stacks were valid"
        );
    }
}

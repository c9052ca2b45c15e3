//! The shape of the house, checked: modules depend on each other in one
//! direction (no import circle between the crate's top-level modules).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its non-test code names.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut deps = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let top = rel.split('/').next().unwrap().trim_end_matches(".rs");
            if ["main", "lib", "architecture_tests"].contains(&top) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let named: &mut BTreeSet<String> = deps.entry(top.to_string()).or_default();
            named.extend(crate_paths(code).filter(|m| m != top));
        }
    }
    deps
}

/// The modules named as `crate::m` (not `$sdk::config`, not `my_crate::m`).
fn crate_paths(code: &str) -> impl Iterator<Item = String> + '_ {
    code.match_indices("crate::").filter_map(move |(at, _)| {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            return None;
        }
        let rest = &code[at + "crate::".len()..];
        let end = rest.find(|c: char| !(c.is_ascii_lowercase() || c == '_'))?;
        Some(rest[..end].to_string()).filter(|m| !m.is_empty())
    })
}

/// A path from `to` back to `from`, if one exists.
fn path_back(
    deps: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut queue = vec![vec![to.to_string()]];
    while let Some(path) = queue.pop() {
        let last = path.last().unwrap();
        if last == from {
            return Some(path);
        }
        for next in deps.get(last).into_iter().flatten() {
            if seen.insert(next.clone()) {
                queue.push([path.clone(), vec![next.clone()]].concat());
            }
        }
    }
    None
}

#[test]
fn no_import_circle_between_modules() {
    let deps = dependencies();
    for (module, named) in &deps {
        for other in named {
            if let Some(back) = path_back(&deps, module, other) {
                panic!("import circle: {module} -> {}", back.join(" -> "));
            }
        }
    }
}

#[test]
fn crate_paths_skip_other_crates_and_macros() {
    let code = "use crate::plan::X; $sdk::config::B; my_crate::state; crate::iam::f()";
    assert_eq!(crate_paths(code).collect::<Vec<_>>(), ["plan", "iam"]);
}

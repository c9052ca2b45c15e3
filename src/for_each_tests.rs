//! `for_each`: collections are expanded, and what is wrong with them is
//! said before any AWS call.

use std::path::Path;

use super::*;

fn check_with(src: &str, vars: &[(&str, &str)]) -> Result<Validated, String> {
    let stack = Stack::parse(Path::new("stack.yaml"), src).map_err(|e| e.to_string())?;
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    validate(stack, &vars, Some("us-east-2")).map_err(|e| e.to_string())
}

fn check(src: &str) -> Result<Validated, String> {
    check_with(src, &[])
}

const FLEET: &str = "stack: demo
variables:
  fleet:
    default:
      web-1: {retention: 7}
      web-2: {retention: 14}
resources:
  logs:
    type: aws_cloudwatch_log_group
    for_each: ${var.fleet}
    properties:
      name: app-${each.key}
      retention_in_days: ${each.value.retention}
  alerts:
    type: aws_sns_topic
    for_each: ${var.fleet}
    properties:
      name: alerts-${each.key}
      display_name: ${logs[each.key].name}
  everything:
    type: aws_sqs_queue
    depends_on: [alerts]
    properties:
      name: everything
      tags:
        groups: ${logs[\"web-1\"].name}
outputs:
  groups: ${logs[*].name}
";

fn prop(v: &Validated, id: &str, name: &str) -> String {
    let node = &v.stack.decls[id].property(name).unwrap().value;
    match &node.kind {
        NodeKind::Str(s) => s.clone(),
        _ => node.to_json().to_string(),
    }
}

#[test]
fn each_key_of_a_map_variable_is_one_resource() {
    let v = check(FLEET).unwrap();
    assert_eq!(prop(&v, "logs[\"web-1\"]", "name"), "app-web-1");
    assert_eq!(prop(&v, "logs[\"web-2\"]", "retention_in_days"), "14");
    assert!(!v.stack.decls.contains_key("logs"));
    assert_eq!(v.stack.collections["logs"], ["web-1", "web-2"]);
}

#[test]
fn an_instance_refers_to_the_instance_of_the_same_key() {
    let v = check(FLEET).unwrap();
    assert_eq!(
        prop(&v, "alerts[\"web-2\"]", "display_name"),
        "${logs[\"web-2\"].name}"
    );
    assert!(v.graph.orders("logs[\"web-2\"]", "alerts[\"web-2\"]"));
}

#[test]
fn depends_on_a_collection_waits_for_every_instance() {
    let v = check(FLEET).unwrap();
    let deps: Vec<&str> = v.stack.decls["everything"]
        .depends_on
        .iter()
        .map(|(d, _)| d.as_str())
        .collect();
    assert_eq!(deps, ["alerts[\"web-1\"]", "alerts[\"web-2\"]"]);
}

#[test]
fn a_splat_is_the_list_over_all_instances() {
    let v = check(FLEET).unwrap();
    assert_eq!(
        v.stack.outputs["groups"].to_json(),
        serde_json::json!(["${logs[\"web-1\"].name}", "${logs[\"web-2\"].name}"])
    );
}

const JSON_POLICY: &str = r#"stack: demo
resources:
  server:
    type: aws_instance
    for_each: [a, b]
    properties: {ami: ami-12c6146b, instance_type: t3.micro}
  restart:
    type: aws_iam_policy
    properties:
      name: restart
      policy: |
        {"Version": "2012-10-17", "Statement": [
          {"Effect": "Allow", "Action": "ec2:StopInstances", "Resource": RESOURCE}]}
"#;

#[test]
fn a_splat_in_a_json_string_policy_is_a_json_list_of_its_values() {
    let v = check(&JSON_POLICY.replace("RESOURCE", "${server[*].arn}")).unwrap();
    let policy = prop(&v, "restart", "policy");
    assert_contains!(
        policy,
        r#""Resource": ["${server["a"].arn}", "${server["b"].arn}"]}"#
    );
    assert!(v.graph.orders("server[\"b\"]", "restart"));
}

#[test]
fn a_splat_in_text_that_is_not_a_json_document_is_refused() {
    let src = "stack: demo\nresources:\n  q:\n    type: aws_sqs_queue\n    for_each: [a]\n    properties: {name: \"q-${each.key}\"}\n  t:\n    type: aws_sns_topic\n    properties: {name: t, display_name: \"a:${q[*].arn},b\"}\n";
    let err = check(src).unwrap_err();
    assert_contains!(err, "is a list: it must be the whole value");
}

#[test]
fn a_quoted_splat_in_a_json_string_says_to_drop_the_quotes() {
    let err = check(&JSON_POLICY.replace("RESOURCE", "\"${server[*].arn}\"")).unwrap_err();
    assert_contains!(err, "in a JSON document, write it without quotes");
}

#[test]
fn a_list_var_overrides_the_default_and_its_kind_is_checked() {
    let src = "stack: demo\nvariables:\n  names: [a]\nresources:\n  q:\n    type: aws_sqs_queue\n    for_each: ${var.names}\n    properties: {name: \"q-${each.value}\"}\n";
    let v = check_with(src, &[("names", "[b, c]")]).unwrap();
    let ids: Vec<&String> = v.stack.decls.keys().collect();
    assert_eq!(ids, ["q[\"b\"]", "q[\"c\"]"]);
    let err = check_with(src, &[("names", "b")]).unwrap_err();
    assert_contains!(err, "--var names: must be a list");
}

fn refused(for_each: &str, name: &str) -> String {
    let src = format!("stack: demo\nvariables:\n  n: 3\nresources:\n  q:\n    type: aws_sqs_queue\n    for_each: {for_each}\n    properties: {{name: \"{name}\"}}\n");
    check(&src).unwrap_err()
}

#[test]
fn for_each_over_a_number_is_refused_with_file_and_line() {
    let err = refused("${var.n}", "q-${each.key}");
    assert!(err.contains("stack.yaml:7: `q`, property `for_each`: for_each must be a list of strings or a map; this is an integer"), "{err}");
}

#[test]
fn a_key_listed_twice_is_refused() {
    let err = refused("[a, b, a]", "q-${each.key}");
    assert_contains!(err, "key `a` is listed twice");
}

#[test]
fn a_key_aws_names_refuse_is_refused() {
    let err = refused("[\"web 1\"]", "q-${each.key}");
    assert_contains!(err, "key `web 1`: keys name AWS objects");
}

#[test]
fn keys_that_give_two_resources_one_name_are_refused() {
    let err = refused("[a, b]", "q");
    assert_contains!(
        err,
        "stack.yaml:8: `q[\"b\"]`, property `name`: names the same aws_sqs_queue as `q[\"a\"]` (q)"
    );
}

#[test]
fn names_known_only_after_apply_are_not_compared() {
    let src = "stack: demo\nresources:\n  t:\n    type: aws_sns_topic\n    properties: {name: t}\n  q:\n    type: aws_sqs_queue\n    for_each: [a, b]\n    properties: {name: \"${t.name}\"}\n";
    assert!(check(src).is_ok());
}

#[test]
fn for_each_over_a_resource_attribute_is_refused() {
    let err = refused("[\"${other.arn}\"]", "q-${each.key}");
    assert_contains!(err, "for_each must be known before any AWS call");
}

#[test]
fn each_outside_for_each_is_refused() {
    let src = "stack: demo\nresources:\n  q:\n    type: aws_sqs_queue\n    properties: {name: \"q-${each.key}\"}\n";
    let err = check(src).unwrap_err();
    assert_contains!(err, "stack.yaml:5: `q`, property `name`: `${each.key}`: `each` is defined only in a resource with `for_each`");
}

#[test]
fn a_reference_to_a_missing_key_names_the_keys_there_are() {
    let err = check(&FLEET.replace("logs[\"web-1\"].name", "logs[\"web-9\"].name")).unwrap_err();
    assert_contains!(err, "`logs` has no key `web-9` (its keys: web-1, web-2)");
}

#[test]
fn a_collection_named_without_a_key_is_refused() {
    let err = check(&FLEET.replace("logs[\"web-1\"].name", "logs.name")).unwrap_err();
    assert_contains!(err, "`logs` is a collection (for_each): name one instance");
}

#[test]
fn a_missing_field_of_each_value_names_the_fields() {
    let err = check(&FLEET.replace("each.value.retention", "each.value.retain")).unwrap_err();
    assert_contains!(err, "has no field `retain` (its fields: retention)");
}

fn moved(entry: &str) -> String {
    let src = format!("stack: demo\nresources:\n  q:\n    type: aws_sqs_queue\n    for_each: [a]\n    properties: {{name: \"q-${{each.key}}\"}}\n  keep:\n    type: aws_sqs_queue\n    properties: {{name: keep}}\nmoved:\n  - {entry}\n");
    check(&src).unwrap_err()
}

/// A fleet may drop the key a move once targeted: the entry does nothing
/// until a state records its `from`, and then the plan refuses it.
#[test]
fn a_move_to_an_undeclared_address_is_refused_only_when_it_would_apply() {
    let src = "stack: demo\nresources:\n  q:\n    type: aws_sqs_queue\n    for_each: [a]\n    properties: {name: \"q-${each.key}\"}\nmoved:\n  - {from: old, to: 'q[\"b\"]'}\n";
    let v = check(src).unwrap();
    let empty = crate::state::State::new("demo");
    assert!(crate::plan::with_moves(&v, &empty).unwrap().1.is_empty());
    let mut recorded = empty.clone();
    let record = serde_json::json!({"type": "aws_sqs_queue", "physical_id": "u", "props": {}, "attrs": {}, "depends_on": []});
    recorded
        .resources
        .insert("old".into(), serde_json::from_value(record).unwrap());
    let err = crate::plan::with_moves(&v, &recorded).unwrap_err();
    assert_contains!(err, "the state records `old`, which would move to `q[\"b\"]`, and the stack does not declare it");
}

#[test]
fn a_move_from_a_declared_resource_is_refused() {
    let err = moved("{from: keep, to: 'q[\"a\"]'}");
    assert_contains!(err, "moves `keep`, which the stack still declares");
}

#[test]
fn a_move_must_name_two_addresses() {
    let err = moved("{from: old}");
    assert_contains!(err, "`moved` lists `{from: ADDRESS, to: ADDRESS}`");
}

#[test]
fn join_writes_every_instance_into_one_string() {
    let src = FLEET.replace(
        "      name: everything\n",
        "      name: everything\n      policy: \"${join(\\\",\\\", logs[*].arn)}\"\n",
    );
    let mut stack = Stack::parse(Path::new("stack.yaml"), &src).unwrap();
    let vars = vars_of(&stack);
    let mut diags = Vec::new();
    crate::config::expand(&mut stack, &vars, &mut diags);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        prop_of(&stack, "everything", "policy"),
        "${logs[\"web-1\"].arn},${logs[\"web-2\"].arn}"
    );
}

fn vars_of(stack: &Stack) -> BTreeMap<String, Value> {
    stack
        .variables
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.default.as_ref()?.to_json())))
        .collect()
}

fn prop_of(stack: &Stack, id: &str, name: &str) -> String {
    stack.decls[id]
        .property(name)
        .unwrap()
        .value
        .as_str()
        .unwrap()
        .to_string()
}

/// The README's fleet example, as a user copies it: the stack file and
/// env/prod.yaml, valid as they stand, with prod's fleet of three.
#[test]
fn the_readmes_fleet_example_validates_in_each_environment() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## A fleet, in every environment")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README's fleet section");
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("env")).unwrap();
    std::fs::write(dir.path().join("stack.yaml"), blocks[0]).unwrap();
    std::fs::write(dir.path().join("env/prod.yaml"), blocks[1]).unwrap();
    let servers = |env: Option<&str>| {
        let stack = Stack::load_in(&dir.path().join("stack.yaml"), env).unwrap();
        let v = validate(stack, &[], None).unwrap();
        let ids = v.stack.decls.keys().filter(|id| id.starts_with("server["));
        ids.cloned().collect::<Vec<_>>()
    };
    assert_eq!(servers(None), ["server[\"web-1\"]", "server[\"web-2\"]"]);
    assert_eq!(servers(Some("prod")).len(), 3);
}

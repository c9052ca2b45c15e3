//! Modules: instantiated once or per key, their outputs read by the stack,
//! and their mistakes told with the module's file and where it is declared.

use super::*;

const MODULE: &str = "variables:
  name:
  retention: 7
resources:
  logs:
    type: aws_cloudwatch_log_group
    properties:
      name: /app/${var.name}
      retention_in_days: ${var.retention}
  alerts:
    type: aws_sns_topic
    properties:
      name: alerts-${var.name}
      display_name: ${logs.name}
outputs:
  group: ${logs.name}
  topic: ${alerts.arn}
";

const STACK: &str = "stack: demo
variables:
  fleet: [web-1, web-2]
modules:
  app:
    source: ./modules/app
    for_each: ${var.fleet}
    inputs: {name: \"${each.key}\"}
resources:
  inbox:
    type: aws_sqs_queue
    properties:
      name: inbox
      tags: {group: \"${module.app[\\\"web-2\\\"].group}\"}
outputs:
  topics: ${module.app[*].topic}
";

/// A stack file and its module in a directory of their own.
fn validated(stack: &str, module: &str) -> (tempfile::TempDir, Result<Validated, String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("modules/app")).unwrap();
    std::fs::write(dir.path().join("modules/app/stack.yaml"), module).unwrap();
    let path = dir.path().join("stack.yaml");
    std::fs::write(&path, stack).unwrap();
    let stack = crate::config::Stack::load(&path).map_err(|e| e.to_string());
    let v = stack.and_then(|s| validate(s, &[], Some("us-east-2")).map_err(|e| e.to_string()));
    (dir, v)
}

/// Asserts that `message` is in `err`, and that `what` is said there once.
fn told_once(err: &str, message: &str, what: &str) {
    assert_contains!(err, message);
    assert_eq!(err.matches(what).count(), 1, "{err}");
}

fn text(v: &Validated, id: &str, prop: &str) -> String {
    let node = &v.stack.decls[id].property(prop).unwrap().value;
    node.as_str()
        .map_or_else(|| node.to_json().to_string(), str::to_string)
}

#[test]
fn each_instance_of_a_module_adds_its_resources_at_their_addresses() {
    let (_dir, v) = validated(STACK, MODULE);
    let v = v.unwrap();
    assert_eq!(text(&v, "module.app[\"web-1\"].logs", "name"), "/app/web-1");
    assert_eq!(
        text(&v, "module.app[\"web-2\"].logs", "retention_in_days"),
        "7"
    );
    assert_eq!(
        text(&v, "module.app[\"web-1\"].alerts", "display_name"),
        "${module.app[\"web-1\"].logs.name}"
    );
}

#[test]
fn the_stack_reads_a_modules_outputs() {
    let (_dir, v) = validated(STACK, MODULE);
    let v = v.unwrap();
    let tags = v.stack.decls["inbox"]
        .property("tags")
        .unwrap()
        .value
        .to_json();
    assert_eq!(tags["group"], "${module.app[\"web-2\"].logs.name}");
    assert_eq!(
        v.stack.outputs["topics"].to_json(),
        serde_json::json!([
            "${module.app[\"web-1\"].alerts.arn}",
            "${module.app[\"web-2\"].alerts.arn}"
        ])
    );
    assert!(v.graph.orders("module.app[\"web-2\"].logs", "inbox"));
}

#[test]
fn a_missing_input_is_told_where_the_module_is_declared() {
    let (_dir, v) = validated(
        &STACK.replace("    inputs: {name: \"${each.key}\"}\n", ""),
        MODULE,
    );
    let message = "stack.yaml:5: `modules.app.inputs`: input `name` is missing";
    told_once(&v.unwrap_err(), message, "input `name` is missing");
}

#[test]
fn an_unknown_input_names_the_modules_variables() {
    let (_dir, v) = validated(
        &STACK.replace("inputs: {name:", "inputs: {nam: x, name:"),
        MODULE,
    );
    let err = v.unwrap_err();
    assert_contains!(
        err,
        "input `nam`: the module declares no such variable (its variables: name, retention)"
    );
}

#[test]
fn a_mistake_inside_a_module_names_its_file_line_and_where_it_is_declared() {
    let (_dir, v) = validated(STACK, &MODULE.replace("retention: 7", "retention: 8"));
    let err = v.unwrap_err();
    // The value's line: the module's default for it.
    assert_contains!(
        err,
        "modules/app/stack.yaml:3: `module.app[\"web-1\"].logs`, property `retention_in_days`"
    );
    assert_contains!(err, "(in `module.app[\"web-1\"]`, declared at ");
    assert_contains!(err, "stack.yaml:5)");
}

#[test]
fn a_cycle_through_a_module_is_refused() {
    let module = MODULE.replace("  name:\n", "  name:\n  peer:\n").replace(
        "      display_name: ${logs.name}",
        "      display_name: ${var.peer}",
    );
    let stack = STACK.replace("].group}", "].topic}").replace(
        "    inputs: {name: \"${each.key}\"}",
        "    inputs: {name: \"${each.key}\", peer: \"${inbox.url}\"}",
    );
    let (_dir, v) = validated(&stack, &module);
    let err = v.unwrap_err();
    assert_contains!(err, "dependency cycle");
    assert_contains!(err, "module.app[\"web-2\"].alerts");
}

#[test]
fn a_missing_output_names_the_modules_outputs() {
    let (_dir, v) = validated(&STACK.replace("].group}", "].groups}"), MODULE);
    let err = v.unwrap_err();
    assert_contains!(
        err,
        "module `app` has no output `groups` (its outputs: group, topic)"
    );
}

/// `a_reader` sorts before `z_source` but reads its output: it is
/// instantiated after it, and its resources wait for that output's resource.
const READER: &str = "stack: demo
modules:
  a_reader:
    source: ./modules/app
    inputs: {name: \"${module.z_source.group}\"}
  z_source:
    source: ./modules/app
    inputs: {name: source}
";

#[test]
fn a_modules_input_reads_another_modules_output() {
    let (_dir, v) = validated(READER, MODULE);
    let v = v.unwrap();
    assert_eq!(
        text(&v, "module.a_reader.logs", "name"),
        "/app/${module.z_source.logs.name}"
    );
    let (_dir, v) = validated(&READER.replace("group", "topic"), MODULE);
    let v = v.unwrap();
    assert_eq!(
        text(&v, "module.a_reader.alerts", "name"),
        "alerts-${module.z_source.alerts.arn}"
    );
    assert!(v
        .graph
        .orders("module.z_source.alerts", "module.a_reader.alerts"));
}

#[test]
fn modules_reading_each_others_outputs_are_refused() {
    let cycle = READER.replace(
        "inputs: {name: source}",
        "inputs: {name: \"${module.a_reader.group}\"}",
    );
    let (_dir, v) = validated(&cycle, MODULE);
    let err = v.unwrap_err();
    assert_contains!(
        err,
        "modules read each other's outputs in a cycle: a_reader -> z_source -> a_reader"
    );
}

/// `${module.app[*].topic}` is a list however many instances there are.
#[test]
fn a_splat_over_one_module_instance_is_a_list_of_one() {
    let (_dir, v) = validated(
        &STACK
            .replace("[web-1, web-2]", "[web-1]")
            .replace("web-2", "web-1"),
        MODULE,
    );
    let v = v.unwrap();
    assert_eq!(
        v.stack.outputs["topics"].to_json(),
        serde_json::json!(["${module.app[\"web-1\"].alerts.arn}"])
    );
}

/// A reference a module cannot make is told once, not again as the empty
/// value it left behind (a name "must be 1 to 512 characters").
#[test]
fn a_reference_a_module_cannot_make_is_told_once() {
    let module = MODULE.replace("name: /app/${var.name}", "name: /app/${nope.name}");
    let (_dir, v) = validated(&STACK.replace("[web-1, web-2]", "[web-1]"), &module);
    let message = "`module.app[\"web-1\"].logs`, property `name`: `${nope.name}`: a module refers only to its own resources";
    told_once(&v.unwrap_err(), message, "property `name`");
}

/// An output's error names it as the stack's outputs are named.
#[test]
fn a_modules_output_is_named_in_its_errors() {
    let module = MODULE.replace("group: ${logs.name}", "group: ${nope.name}");
    let (_dir, v) = validated(STACK, &module);
    assert_contains!(
        v.unwrap_err(),
        "`module.app[\"web-1\"].outputs.group`: `${nope.name}`: a module refers only to its own resources"
    );
}

/// A module of queues, one per name it is given, each with a copy that
/// names it, and a topic that waits for all of them.
const QUEUES: &str = "variables:
  prefix:
  names: {default: [a]}
resources:
  q:
    type: aws_sqs_queue
    for_each: ${var.names}
    properties: {name: \"${var.prefix}-${each.key}\"}
  copy:
    type: aws_sqs_queue
    for_each: ${var.names}
    properties:
      name: \"${var.prefix}-${each.key}-copy\"
      tags: {of: \"${q[each.key].url}\"}
  t:
    type: aws_sns_topic
    properties: {name: \"${var.prefix}-t\", display_name: \"${q[\\\"x\\\"].name}\"}
    depends_on: [q]
outputs:
  urls: ${q[*].url}
";

const QUEUE_STACK: &str = "stack: demo
modules:
  app:
    source: ./modules/app
    for_each: [web-1, web-2]
    inputs: {prefix: \"${each.key}\", names: [x, y]}
outputs:
  urls: ${module.app[\"web-2\"].urls}
";

#[test]
fn a_resource_inside_a_module_may_have_for_each() {
    let (_dir, v) = validated(QUEUE_STACK, QUEUES);
    let v = v.unwrap();
    let q = |m: &str, key: &str| format!("module.app[\"{m}\"].q[\"{key}\"]");
    assert_eq!(text(&v, &q("web-1", "x"), "name"), "web-1-x");
    assert_eq!(text(&v, &q("web-2", "y"), "name"), "web-2-y");
    let copy = &v.stack.decls["module.app[\"web-2\"].copy[\"y\"]"];
    let tags = copy.property("tags").unwrap().value.to_json();
    assert_eq!(tags["of"], format!("${{{}.url}}", q("web-2", "y")));
    let t = "module.app[\"web-1\"].t";
    assert_eq!(
        text(&v, t, "display_name"),
        format!("${{{}.name}}", q("web-1", "x"))
    );
    assert!(v.graph.orders(&q("web-1", "x"), t) && v.graph.orders(&q("web-1", "y"), t));
    assert_eq!(
        v.stack.outputs["urls"].to_json(),
        serde_json::json!([
            format!("${{{}.url}}", q("web-2", "x")),
            format!("${{{}.url}}", q("web-2", "y"))
        ])
    );
}

#[test]
fn a_missing_key_inside_a_module_names_the_keys_there_are() {
    let (_dir, v) = validated(QUEUE_STACK, &QUEUES.replace("q[\\\"x\\\"]", "q[\\\"z\\\"]"));
    let err = v.unwrap_err();
    assert_contains!(
        err,
        "modules/app/stack.yaml:17: `module.app[\"web-1\"].t`, property `display_name`: `${q[\"z\"].name}`: `q` has no key `z` (its keys: x, y)"
    );
}

#[test]
fn for_each_inside_a_module_over_a_number_is_refused_in_the_modules_file() {
    let (_dir, v) = validated(&QUEUE_STACK.replace("names: [x, y]", "names: 3"), QUEUES);
    assert_contains!(
        v.unwrap_err(),
        "modules/app/stack.yaml:7: `module.app[\"web-1\"].q`, property `for_each`: for_each must be a list of strings or a map; this is an integer"
    );
}

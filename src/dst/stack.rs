//! The simulation's stacks: generated resources of the model's types with
//! references between them, the edits made to them, and their stack file.

use super::cloud::TYPES;
use crate::rng::Rng;

#[derive(Debug, Clone)]
pub(super) struct Res {
    pub(super) id: String,
    pub(super) type_name: &'static str,
    pub(super) name: String,
    /// A queue's visibility timeout, a log group's retention, a topic's
    /// tag, a filter's pattern.
    pub(super) setting: u64,
    /// What it refers to: the topic whose ARN a queue carries in a tag, or
    /// a metric filter's log group (which it cannot be without).
    pub(super) on: Option<String>,
}

pub(super) const RETENTIONS: &[u64] = &[1, 3, 5, 7, 14, 30];

pub(super) fn render(stack: &[Res]) -> String {
    let mut out = String::from("stack: dst\nregion: us-east-2\nresources:\n");
    if stack.is_empty() {
        out = out.replace("resources:\n", "resources: {}\n");
    }
    for r in stack {
        let props = match r.type_name {
            "aws_sns_topic" => format!("{{name: {}, tags: {{level: \"{}\"}}}}", r.name, r.setting),
            "aws_sqs_queue" => {
                let tags = r.on.as_ref().map_or(String::new(), |t| {
                    format!(", tags: {{topic: \"${{{t}.arn}}\"}}")
                });
                format!(
                    "{{name: {}, visibility_timeout_seconds: {}{tags}}}",
                    r.name, r.setting
                )
            }
            "aws_cloudwatch_log_metric_filter" => format!(
                "{{name: {}, log_group_name: \"${{{}.name}}\", pattern: slow-{}, \
                 metric_transformation: {{name: Slow, namespace: Dst, value: \"1\"}}}}",
                r.name,
                r.on.as_deref().unwrap_or_default(),
                r.setting
            ),
            _ => format!(
                "{{name: {}, retention_in_days: {}}}",
                r.name,
                RETENTIONS[r.setting as usize % RETENTIONS.len()]
            ),
        };
        out.push_str(&format!(
            "  {}:\n    type: {}\n    properties: {props}\n",
            r.id, r.type_name
        ));
    }
    out
}

pub(super) fn new_res(rng: &mut Rng, stack: &[Res], n: u64, seed: u64) -> Res {
    let of = |t: &str| -> Vec<String> {
        let of_type = stack.iter().filter(|r| r.type_name == t);
        of_type.map(|r| r.id.clone()).collect()
    };
    let (topics, groups) = (of("aws_sns_topic"), of("aws_cloudwatch_log_group"));
    let mut type_name = *rng.pick(TYPES);
    if type_name == "aws_cloudwatch_log_metric_filter" && groups.is_empty() {
        type_name = "aws_cloudwatch_log_group";
    }
    let on = match type_name {
        "aws_sqs_queue" if !topics.is_empty() && rng.per_mille(600) => {
            Some(rng.pick(&topics).clone())
        }
        "aws_cloudwatch_log_metric_filter" => Some(rng.pick(&groups).clone()),
        _ => None,
    };
    Res {
        id: format!("r{n}"),
        type_name,
        name: format!("dst-{seed}-{n}"),
        setting: rng.below(60) as u64,
        on,
    }
}

/// An edit: add, remove, change in place, or change what forces a
/// replacement (the name).
pub(super) fn edit(rng: &mut Rng, stack: &mut Vec<Res>, n: u64, seed: u64) -> &'static str {
    let kind = if stack.is_empty() { 0 } else { rng.below(4) };
    let at = rng.below(stack.len());
    match kind {
        0 => {
            let r = new_res(rng, stack, n, seed);
            stack.push(r);
            "add"
        }
        1 => {
            let gone = Some(stack.remove(at).id);
            // A filter goes with its log group; a queue forgets its topic.
            stack.retain(|r| r.type_name != "aws_cloudwatch_log_metric_filter" || r.on != gone);
            for r in stack.iter_mut().filter(|r| r.on == gone) {
                r.on = None;
            }
            "remove"
        }
        2 => {
            stack[at].setting = (stack[at].setting + 1 + rng.below(20) as u64) % 60;
            "change"
        }
        _ => {
            stack[at].name = format!("dst-{seed}-{n}-renamed");
            "replace"
        }
    }
}

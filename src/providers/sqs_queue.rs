use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName as Qa;
use serde_json::{Map, Value};

use super::Typed;
use super::{
    absent, attrs, check_fifo_name, check_range, fifo, fifo_rules, json_text, parse_json_text,
    retry_eventual, split_tags, tagging, with_tags, Attrs, Created, Ctx, Observed, Provider,
    ProviderError, ReadResult, Resource, Update, CONTENT_BASED_DEDUPLICATION,
};
use crate::schema::{
    is_unknown, Actions, ActsOn, Attr, Default, Names, Part, Prop, Props, Schema, Service, Tagging,
    Type,
};

pub struct SqsQueue;

fn check_queue_name(v: &Value) -> Result<(), String> {
    let what = "queue names use letters, digits, `-` and `_` (FIFO queues end in .fifo)";
    check_fifo_name(v, 80, what)
}

/// Schema property ↔ SQS queue attribute, for the boolean attributes a
/// standard queue has none of (AWS refuses them on one).
const FIFO_ATTRS: &[(&str, Qa)] = &[
    ("fifo_queue", Qa::FifoQueue),
    ("content_based_deduplication", Qa::ContentBasedDeduplication),
];

/// Schema property ↔ SQS queue attribute, for the integer attributes.
const INT_ATTRS: &[(&str, Qa)] = &[
    ("visibility_timeout_seconds", Qa::VisibilityTimeout),
    ("message_retention_seconds", Qa::MessageRetentionPeriod),
    ("delay_seconds", Qa::DelaySeconds),
    (
        "receive_wait_time_seconds",
        Qa::ReceiveMessageWaitTimeSeconds,
    ),
];

/// A redrive policy: where messages go after `maxReceiveCount` receives.
fn check_redrive(v: &Value) -> Result<(), String> {
    let policy = parse_json_text(&json_text(v));
    if policy == Value::String(String::new()) {
        return Ok(());
    }
    // Only an ARN written out is checked, not a reference known after apply.
    let arn = policy.get("deadLetterTargetArn");
    let written = arn
        .filter(|a| !is_unknown(a))
        .and_then(Value::as_str)
        .is_none_or(|a| a.starts_with("arn:"));
    let count = policy.get("maxReceiveCount").and_then(Value::as_i64);
    match (arn, count) {
        (Some(_), Some(1..=1000)) if written => Ok(()),
        _ => Err("must be {deadLetterTargetArn: <queue ARN>, maxReceiveCount: <1 to 1000>}".into()),
    }
}

static SCHEMA: Schema = Schema {
    type_name: "aws_sqs_queue",
    service: Service::Sqs,
    doc: "An SQS queue. Its id is the queue URL.",
    props: &[
        Prop::new("name", Type::String, "Queue name.")
            .required()
            .force_new()
            .check(check_queue_name),
        Prop::new(
            "visibility_timeout_seconds",
            Type::Int,
            "Visibility timeout, 0-43200 s.",
        )
        .default(Default::Int(30))
        .check(|v| check_range(v, 0, 43_200)),
        Prop::new(
            "message_retention_seconds",
            Type::Int,
            "Retention, 60-1209600 s.",
        )
        .default(Default::Int(345_600))
        .check(|v| check_range(v, 60, 1_209_600)),
        Prop::new("delay_seconds", Type::Int, "Delivery delay, 0-900 s.")
            .default(Default::Int(0))
            .check(|v| check_range(v, 0, 900)),
        Prop::new("receive_wait_time_seconds", Type::Int, "Long polling: how long a receive waits for a message, 0-20 s.")
            .default(Default::Int(0))
            .check(|v| check_range(v, 0, 20)),
        Prop::new("redrive_policy", Type::Json, "The dead-letter queue: {deadLetterTargetArn: ${dlq.arn}, maxReceiveCount: 5}. Left out: none.")
            .default(Default::Str(""))
            .check(check_redrive),
        fifo("fifo_queue", "A FIFO queue (its name ends in .fifo): in order within a message group, each message once."),
        CONTENT_BASED_DEDUPLICATION,
        Prop::tags(),
    ],
    attrs: &[
        Attr::new("arn", "Queue ARN."),
        Attr::new("id", "Queue URL (Terraform's id)."),
        Attr::new("url", "Queue URL."),
    ],
    tagging: Tagging::Sqs,
    cross_check: Some(|p| fifo_rules(p, "fifo_queue", "queue")),
    identity: &["name"],
    arn_format: Some("arn:aws:sqs:{region}:{account}:{name}"),
    names: &[
        ("arn", Names::Arn),
        ("url", Names::Url),
        ("id", Names::Url),
        ("name", Names::Name),
    ],
    part: Part::Queue,
    actions: Actions {
        read: &["sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
        create: &["sqs:CreateQueue"],
        update: &["sqs:SetQueueAttributes"],
        delete: &["sqs:DeleteQueue"],
        on: ActsOn::Itself,
    },
    ..Schema::BASE
};

impl Typed for SqsQueue {
    const SCHEMA: &'static Schema = &SCHEMA;
}

/// GetQueueAttributes' answer as the stack file names it (tags aside): the
/// name from the ARN, the numbers SQS sends as text.
fn props_of(attributes: &HashMap<Qa, String>) -> Props {
    let arn = attributes.get(&Qa::QueueArn).map_or("", String::as_str);
    let mut props = Props::new();
    let name = arn.rsplit(':').next().unwrap_or_default();
    props.insert("name".into(), Value::from(name));
    for (prop, attr) in INT_ATTRS {
        if let Some(n) = attributes.get(attr).and_then(|s| s.parse::<i64>().ok()) {
            props.insert(prop.to_string(), Value::from(n));
        }
    }
    for (prop, attr) in FIFO_ATTRS {
        let set = attributes.get(attr).is_some_and(|s| s == "true");
        props.insert(prop.to_string(), Value::from(set));
    }
    let redrive = attributes
        .get(&Qa::RedrivePolicy)
        .map_or("", String::as_str);
    props.insert("redrive_policy".into(), parse_json_text(redrive));
    props
}

/// The codes SQS answers for a queue that does not exist.
pub const NO_QUEUE: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
];

fn queue_attrs(url: &str, arn: &str) -> Map<String, Value> {
    attrs([
        ("arn", Value::from(arn)),
        ("id", Value::from(url)),
        ("url", Value::from(url)),
    ])
}

async fn queue_arn(cx: &Ctx, url: &str) -> Result<String, ProviderError> {
    let out = send!(cx
        .sqs()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Qa::QueueArn))?;
    out.attributes
        .and_then(|mut a| a.remove(&Qa::QueueArn))
        .ok_or_else(|| ProviderError::unexpected("GetQueueAttributes returned no QueueArn"))
}

/// A queue's ARN from its URL (`.../ACCOUNT/NAME`), as AWS forms it.
fn arn_of_url(cx: &Ctx, url: &str) -> String {
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let (name, account) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    format!(
        "arn:{}:sqs:{}:{account}:{name}",
        cx.partition(),
        cx.region()
    )
}

#[async_trait]
impl Provider for SqsQueue {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let mut attributes = HashMap::new();
        for (prop, attr) in INT_ATTRS {
            if let Some(n) = r.i64(prop) {
                attributes.insert(attr.clone(), n.to_string());
            }
        }
        for (prop, attr) in FIFO_ATTRS {
            if r.bool(prop) == Some(true) {
                attributes.insert(attr.clone(), "true".to_string());
            }
        }
        if let Some(redrive) = r
            .props
            .get("redrive_policy")
            .map(json_text)
            .filter(|t| !t.is_empty())
        {
            attributes.insert(Qa::RedrivePolicy, redrive);
        }
        let tags: HashMap<_, _> = r.tags_with_ownership(cx).into_iter().collect();
        let name = r.required_str("name")?;
        // AWS refuses a queue name for 60 s after a queue of that name was deleted,
        // which is exactly what a replacement does.
        let url = retry_eventual(
            Duration::from_secs(90),
            |e| e.is("AWS.SimpleQueueService.QueueDeletedRecently") || e.is("QueueDeletedRecently"),
            || async {
                send!(cx
                    .sqs()
                    .create_queue()
                    .queue_name(name)
                    .set_attributes(Some(attributes.clone()))
                    .set_tags(Some(tags.clone())))
            },
        )
        .await?
        .queue_url
        .ok_or_else(|| ProviderError::unexpected("CreateQueue returned no QueueUrl"))?;
        let arn = queue_arn(cx, &url)
            .await
            .map_err(|e| e.after_create(&url))?;
        Ok(Created::new(url.clone(), queue_attrs(&url, &arn)))
    }

    async fn read(&self, cx: &Ctx, url: &str) -> ReadResult {
        let got = async {
            let got = send!(cx
                .sqs()
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(Qa::All));
            absent(got, NO_QUEUE)
        };
        let tags = tagging::list(SCHEMA.tagging, cx, url);
        let (got, tags) = with_tags(cx, &arn_of_url(cx, url), got, tags).await?;
        let Some(out) = got else {
            return Ok(None);
        };
        let attributes = out.attributes.unwrap_or_default();
        let arn = attributes.get(&Qa::QueueArn).cloned().unwrap_or_default();
        let mut props = props_of(&attributes);
        let (tags, owner) = split_tags(tags);
        props.insert("tags".into(), tags);
        Ok(Some(Observed {
            props,
            attrs: queue_attrs(url, &arn),
            owner,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let (url, r, changed) = (u.id, u.r, u.changed);
        let dedup = ("content_based_deduplication", Qa::ContentBasedDeduplication);
        let redrive = ("redrive_policy", Qa::RedrivePolicy);
        let attributes: HashMap<_, _> = INT_ATTRS
            .iter()
            .filter_map(|(prop, attr)| Some((*prop, attr, r.i64(prop)?.to_string())))
            .chain(r.bool(dedup.0).map(|b| (dedup.0, &dedup.1, b.to_string())))
            .chain(
                r.props
                    .get(redrive.0)
                    .map(|v| (redrive.0, &redrive.1, json_text(v))),
            )
            .filter(|(prop, _, _)| changed.contains(prop))
            .map(|(_, attr, value)| (attr.clone(), value))
            .collect();
        if !attributes.is_empty() {
            send!(cx
                .sqs()
                .set_queue_attributes()
                .queue_url(url)
                .set_attributes(Some(attributes)))?;
        }
        let arn = queue_arn(cx, url).await?;
        Ok(queue_attrs(url, &arn))
    }

    async fn delete(&self, cx: &Ctx, url: &str, _props: &Props) -> Result<(), ProviderError> {
        let deleted = send!(cx.sqs().delete_queue().queue_url(url));
        absent(deleted, NO_QUEUE).map(|_| ())
    }

    async fn find(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Option<String>, ProviderError> {
        let got = send!(cx.sqs().get_queue_url().queue_name(r.required_str("name")?));
        Ok(absent(got, NO_QUEUE)?.and_then(|out| out.queue_url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// GetQueueAttributes' answer of a queue named `name`.
    fn answer(name: &str, attributes: &[(Qa, &str)]) -> HashMap<Qa, String> {
        let arn = format!("arn:aws:sqs:us-east-2:123456789012:{name}");
        let given = attributes.iter().map(|(a, v)| (a.clone(), v.to_string()));
        given.chain([(Qa::QueueArn, arn)]).collect()
    }

    #[test]
    fn queue_attributes_read_as_numbers_and_the_name_comes_from_the_arn() {
        let attributes = answer(
            "inbox",
            &[
                (Qa::VisibilityTimeout, "60"),
                (Qa::MessageRetentionPeriod, "345600"),
                (Qa::DelaySeconds, "0"),
                (Qa::ApproximateNumberOfMessages, "3"),
            ],
        );
        assert_eq!(
            Value::Object(props_of(&attributes)),
            json!({"name": "inbox", "visibility_timeout_seconds": 60,
                   "message_retention_seconds": 345600, "delay_seconds": 0,
                   "fifo_queue": false, "content_based_deduplication": false,
                   "redrive_policy": ""})
        );
    }

    #[test]
    fn a_redrive_policy_names_a_queue_and_a_count_aws_allows() {
        let policy = |count: i64| json!({"deadLetterTargetArn": "arn:aws:sqs:us-east-2:1:dead", "maxReceiveCount": count});
        assert!(check_redrive(&policy(5)).is_ok());
        assert!(check_redrive(&policy(0)).is_err());
        assert!(check_redrive(&policy(1001)).is_err());
        assert!(check_redrive(&json!({"maxReceiveCount": 5})).is_err());
        assert!(
            check_redrive(&json!({"deadLetterTargetArn": "dead", "maxReceiveCount": 5})).is_err()
        );
        let known_later =
            json!({"deadLetterTargetArn": crate::schema::unknown(), "maxReceiveCount": 5});
        assert!(check_redrive(&known_later).is_ok());
    }

    #[test]
    fn a_redrive_policy_reads_as_json_and_none_as_empty() {
        let redrive =
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-2:1:dead","maxReceiveCount":5}"#;
        let with = answer("jobs", &[(Qa::RedrivePolicy, redrive)]);
        assert_eq!(
            props_of(&with)["redrive_policy"]["maxReceiveCount"],
            json!(5)
        );
        assert_eq!(props_of(&answer("jobs", &[]))["redrive_policy"], json!(""));
    }

    #[test]
    fn a_fifo_queue_reads_as_one() {
        let fifo = [
            (Qa::FifoQueue, "true"),
            (Qa::ContentBasedDeduplication, "false"),
        ];
        let props = props_of(&answer("jobs.fifo", &fifo));
        assert_eq!(props["fifo_queue"], json!(true));
        assert_eq!(props["content_based_deduplication"], json!(false));
    }
}

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::Typed;
use super::{
    absent, attrs, check_fifo_name, fifo, fifo_rules, split_tags, tagging, with_tags, Attrs,
    Created, Ctx, Observed, Provider, ProviderError, ReadResult, Resource, Update,
    CONTENT_BASED_DEDUPLICATION,
};
use crate::schema::{
    Actions, ActsOn, Attr, Default, Names, Part, Prop, Props, Schema, Service, Tagging, Type,
};

pub struct SnsTopic;

fn check_topic_name(v: &Value) -> Result<(), String> {
    let what = "topic names use letters, digits, `-` and `_` (FIFO topics end in .fifo)";
    check_fifo_name(v, 256, what)
}

fn check_display_name(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if s.chars().count() <= 100 => Ok(()),
        _ => Err("must be at most 100 characters".into()),
    }
}

static SCHEMA: Schema = Schema {
    type_name: "aws_sns_topic",
    service: Service::Sns,
    doc: "An SNS topic.",
    props: &[
        Prop::new("name", Type::String, "Topic name.")
            .required()
            .force_new()
            .check(check_topic_name),
        Prop::new(
            "display_name",
            Type::String,
            "Display name (used as the sender of SMS and email).",
        )
        .default(Default::Str(""))
        .check(check_display_name),
        fifo("fifo_topic", "A FIFO topic (its name ends in .fifo): it delivers in order within a message group, each message once."),
        CONTENT_BASED_DEDUPLICATION,
        Prop::tags(),
    ],
    attrs: &[
        Attr::new("arn", "Topic ARN."),
        Attr::new("id", "Topic ARN (Terraform's id)."),
    ],
    tagging: Tagging::Sns,
    cross_check: Some(|p| fifo_rules(p, "fifo_topic", "topic")),
    identity: &["name"],
    arn_format: Some("arn:aws:sns:{region}:{account}:{name}"),
    id_format: Some("arn:aws:sns:{region}:{account}:{name}"),
    names: &[
        ("arn", Names::Arn),
        ("id", Names::Arn),
        ("name", Names::Name),
    ],
    part: Part::Topic,
    actions: Actions {
        read: &["sns:GetTopicAttributes"],
        create: &["sns:CreateTopic"],
        update: &["sns:SetTopicAttributes"],
        delete: &["sns:DeleteTopic"],
        on: ActsOn::Itself,
    },
    ..Schema::BASE
};

impl Typed for SnsTopic {
    const SCHEMA: &'static Schema = &SCHEMA;
}

fn topic_attrs(arn: &str) -> Map<String, Value> {
    attrs([("arn", Value::from(arn)), ("id", Value::from(arn))])
}

#[async_trait]
impl Provider for SnsTopic {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        // CreateTopic is idempotent by name: a retry returns the same topic (and
        // would return someone else's: the engine looks before it creates).
        let mut req = cx
            .sns()
            .create_topic()
            .name(r.required_str("name")?)
            .set_tags(Some(tagging::sns(r.tags_with_ownership(cx))?));
        if let Some(d) = r.str("display_name").filter(|d| !d.is_empty()) {
            req = req.attributes("DisplayName", d);
        }
        for (prop, attribute) in FIFO_ATTRS {
            if r.bool(prop) == Some(true) {
                req = req.attributes(*attribute, "true");
            }
        }
        let out = send!(req)?;
        let arn = out
            .topic_arn
            .ok_or_else(|| ProviderError::unexpected("CreateTopic returned no TopicArn"))?;
        Ok(Created::new(arn.clone(), topic_attrs(&arn)))
    }

    async fn read(&self, cx: &Ctx, arn: &str) -> ReadResult {
        let got = async {
            let got = send!(cx.sns().get_topic_attributes().topic_arn(arn));
            absent(got, &["NotFound"])
        };
        let tags = tagging::list(SCHEMA.tagging, cx, arn);
        let (got, tags) = with_tags(cx, arn, got, tags).await?;
        let Some(out) = got else {
            return Ok(None);
        };
        let attributes = out.attributes.unwrap_or_default();
        let (tags, owner) = split_tags(tags);
        let mut props = props_of(arn, &attributes);
        props.insert("tags".into(), tags);
        Ok(Some(Observed {
            props,
            attrs: topic_attrs(arn),
            owner,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let (arn, r, changed) = (u.id, u.r, u.changed);
        let display_name = r.str("display_name").unwrap_or_default().to_string();
        let dedup = r.bool("content_based_deduplication").unwrap_or(false);
        let sets = [
            ("display_name", "DisplayName", display_name),
            (
                "content_based_deduplication",
                "ContentBasedDeduplication",
                dedup.to_string(),
            ),
        ];
        // SetTopicAttributes sets one attribute a call.
        for (_, attribute, value) in sets.into_iter().filter(|(p, ..)| changed.contains(p)) {
            send!(cx
                .sns()
                .set_topic_attributes()
                .topic_arn(arn)
                .attribute_name(attribute)
                .attribute_value(value))?;
        }
        Ok(topic_attrs(arn))
    }

    async fn delete(&self, cx: &Ctx, arn: &str, _props: &Props) -> Result<(), ProviderError> {
        // DeleteTopic succeeds for a topic that no longer exists.
        send!(cx.sns().delete_topic().topic_arn(arn))?;
        Ok(())
    }
}

/// Schema property ↔ topic attribute, for those only a FIFO topic has.
const FIFO_ATTRS: &[(&str, &str)] = &[
    ("fifo_topic", "FifoTopic"),
    ("content_based_deduplication", "ContentBasedDeduplication"),
];

/// GetTopicAttributes' answer as the stack file names it (tags aside): the
/// name from the ARN, no display name as "", a standard topic's FIFO
/// settings as false.
fn props_of(arn: &str, attributes: &std::collections::HashMap<String, String>) -> Props {
    let name = arn.rsplit(':').next().unwrap_or_default();
    let display_name = attributes.get("DisplayName").cloned().unwrap_or_default();
    let mut props = Props::from_iter([
        ("name".to_string(), Value::from(name)),
        ("display_name".to_string(), Value::from(display_name)),
    ]);
    for (prop, attribute) in FIFO_ATTRS {
        let set = attributes.get(*attribute).is_some_and(|s| s == "true");
        props.insert(prop.to_string(), Value::from(set));
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_topic_reads_its_name_from_the_arn_and_its_display_name() {
        let arn = "arn:aws:sns:us-east-2:123456789012:alerts";
        let attributes = [("DisplayName".to_string(), "Alerts".to_string())].into();
        assert_eq!(
            Value::Object(props_of(arn, &attributes)),
            json!({"name": "alerts", "display_name": "Alerts", "fifo_topic": false,
                   "content_based_deduplication": false})
        );
        assert_eq!(
            props_of(arn, &std::collections::HashMap::new())["display_name"],
            json!("")
        );
    }

    #[test]
    fn a_fifo_topic_reads_as_one() {
        let arn = "arn:aws:sns:us-east-2:123456789012:jobs.fifo";
        let attributes = [("FifoTopic", "true"), ("ContentBasedDeduplication", "true")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let props = props_of(arn, &attributes);
        assert_eq!(props["name"], json!("jobs.fifo"));
        assert_eq!(props["fifo_topic"], json!(true));
        assert_eq!(props["content_based_deduplication"], json!(true));
    }
}

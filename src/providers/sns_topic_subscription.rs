use async_trait::async_trait;
use serde_json::{Map, Value};

use super::Typed;
use super::{
    absent, attrs, aws, check_one_of, json_text, parse_json_text, Attrs, Created, Ctx, Observed,
    Provider, ProviderError, ReadResult, Resource, Update,
};
use crate::schema::{
    Actions, ActsOn, Attr, Default, Names, Part, Prop, Props, Schema, Service, Type,
};

pub struct SnsTopicSubscription;

const PROTOCOLS: &[&str] = &[
    "sqs",
    "lambda",
    "firehose",
    "application",
    "sms",
    "http",
    "https",
    "email",
    "email-json",
];

fn check_filter_policy(v: &Value) -> Result<(), String> {
    let doc = match v {
        Value::String(s) if s.is_empty() => return Ok(()),
        Value::String(s) => {
            serde_json::from_str::<Value>(s).map_err(|e| format!("must be valid JSON: {e}"))?
        }
        other => other.clone(),
    };
    match doc {
        Value::Object(m) if m.len() <= 5 => Ok(()),
        Value::Object(_) => Err("may have at most 5 keys (an SNS limit)".into()),
        _ => Err("must be a JSON object".into()),
    }
}

static SCHEMA: Schema = Schema {
    type_name: "aws_sns_topic_subscription",
    service: Service::Sns,
    doc: "A subscription of an endpoint (for sqs: the queue ARN) to an SNS topic.",
    props: &[
        Prop::new("topic_arn", Type::String, "ARN of the topic.")
            .takes(&[("aws_sns_topic", Names::Arn)])
            .required()
            .force_new(),
        Prop::new("protocol", Type::String, "Delivery protocol.")
            .required()
            .force_new()
            .check(|v| check_one_of(v, PROTOCOLS)),
        Prop::new(
            "endpoint",
            Type::String,
            "Where to deliver (queue ARN for sqs, function ARN for lambda).",
        )
        .takes(&[
            ("aws_sqs_queue", Names::Arn),
            ("aws_lambda_function", Names::Arn),
        ])
        .required()
        .force_new(),
        Prop::new(
            "raw_message_delivery",
            Type::Bool,
            "Deliver the message without the SNS envelope.",
        )
        .default(Default::Bool(false)),
        Prop::new(
            "filter_policy",
            Type::Json,
            "Filter policy (map or JSON string); empty for none.",
        )
        .default(Default::Str(""))
        .check(check_filter_policy),
    ],
    attrs: &[
        Attr::new("arn", "Subscription ARN."),
        Attr::new("id", "Subscription ARN (Terraform's id)."),
    ],
    identity: &["topic_arn", "protocol", "endpoint"],
    names: &[("arn", Names::Arn), ("id", Names::Arn)],
    part: Part::Subscription,
    actions: Actions {
        read: &[
            "sns:GetSubscriptionAttributes",
            "sns:ListSubscriptionsByTopic",
        ],
        create: &["sns:Subscribe"],
        update: &["sns:SetSubscriptionAttributes"],
        delete: &["sns:Unsubscribe"],
        on: ActsOn::Parent("topic_arn", "aws_sns_topic"),
    },
    ..Schema::BASE
};

impl Typed for SnsTopicSubscription {
    const SCHEMA: &'static Schema = &SCHEMA;
}

fn filter_policy_text(r: &Resource<'_>) -> String {
    r.props
        .get("filter_policy")
        .map(json_text)
        .unwrap_or_default()
}

fn sub_attrs(arn: &str) -> Map<String, Value> {
    attrs([("arn", Value::from(arn)), ("id", Value::from(arn))])
}

async fn set_attribute(
    cx: &Ctx,
    arn: &str,
    name: &str,
    value: String,
) -> Result<(), ProviderError> {
    send!(cx
        .sns()
        .set_subscription_attributes()
        .subscription_arn(arn)
        .attribute_name(name)
        .attribute_value(value))?;
    Ok(())
}

#[async_trait]
impl Provider for SnsTopicSubscription {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        // Subscribe is idempotent for the same topic, protocol and endpoint.
        let mut req = cx
            .sns()
            .subscribe()
            .topic_arn(r.required_str("topic_arn")?)
            .protocol(r.required_str("protocol")?)
            .endpoint(r.required_str("endpoint")?)
            .return_subscription_arn(true);
        if r.bool("raw_message_delivery") == Some(true) {
            req = req.attributes("RawMessageDelivery", "true");
        }
        let filter = filter_policy_text(r);
        if !filter.is_empty() {
            req = req.attributes("FilterPolicy", filter);
        }
        let out = send!(req)?;
        let arn = out
            .subscription_arn
            .ok_or_else(|| ProviderError::unexpected("Subscribe returned no SubscriptionArn"))?;
        Ok(Created::new(arn.clone(), sub_attrs(&arn)))
    }

    async fn read(&self, cx: &Ctx, arn: &str) -> ReadResult {
        let got = send!(cx.sns().get_subscription_attributes().subscription_arn(arn));
        let Some(out) = absent(got, &["NotFound"])? else {
            return Ok(None);
        };
        let props = props_of(&out.attributes.unwrap_or_default());
        Ok(Some(Observed {
            props,
            attrs: sub_attrs(arn),
            owner: None,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let (arn, r, changed) = (u.id, u.r, u.changed);
        if changed.contains(&"raw_message_delivery") {
            let raw = r.bool("raw_message_delivery").unwrap_or(false);
            set_attribute(cx, arn, "RawMessageDelivery", raw.to_string()).await?;
        }
        if changed.contains(&"filter_policy") {
            set_attribute(cx, arn, "FilterPolicy", filter_policy_text(r)).await?;
        }
        Ok(sub_attrs(arn))
    }

    async fn delete(&self, cx: &Ctx, arn: &str, _props: &Props) -> Result<(), ProviderError> {
        let removed = send!(cx.sns().unsubscribe().subscription_arn(arn));
        absent(removed, &["NotFound"]).map(|_| ())
    }

    async fn find(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Option<String>, ProviderError> {
        let (protocol, endpoint) = (r.required_str("protocol")?, r.required_str("endpoint")?);
        let mut pages = cx
            .sns()
            .list_subscriptions_by_topic()
            .topic_arn(r.required_str("topic_arn")?)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let Some(page) = absent(page.map_err(aws), &["NotFound"])? else {
                return Ok(None);
            };
            let found = page
                .subscriptions
                .unwrap_or_default()
                .into_iter()
                .find(|s| {
                    s.protocol.as_deref() == Some(protocol)
                        && s.endpoint.as_deref() == Some(endpoint)
                });
            if let Some(arn) = found.and_then(|s| s.subscription_arn) {
                return Ok(Some(arn));
            }
        }
        Ok(None)
    }
}

/// GetSubscriptionAttributes' answer as the stack file names it: the
/// delivery flag from its text, the filter policy parsed (none is "").
fn props_of(a: &std::collections::HashMap<String, String>) -> Props {
    let get = |k: &str| a.get(k).cloned().unwrap_or_default();
    let filter = get("FilterPolicy");
    let filter = match filter.is_empty() {
        true => Value::from(""),
        false => parse_json_text(&filter),
    };
    Props::from_iter([
        ("topic_arn".to_string(), Value::from(get("TopicArn"))),
        ("protocol".to_string(), Value::from(get("Protocol"))),
        ("endpoint".to_string(), Value::from(get("Endpoint"))),
        (
            "raw_message_delivery".to_string(),
            Value::Bool(get("RawMessageDelivery") == "true"),
        ),
        ("filter_policy".to_string(), filter),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscription_attributes_read_typed() {
        let a = [
            ("TopicArn", "arn:aws:sns:us-east-2:123456789012:alerts"),
            ("Protocol", "sqs"),
            ("Endpoint", "arn:aws:sqs:us-east-2:123456789012:inbox"),
            ("RawMessageDelivery", "true"),
            ("FilterPolicy", r#"{"level": ["high"]}"#),
        ];
        let a = a
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            Value::Object(props_of(&a)),
            json!({"topic_arn": "arn:aws:sns:us-east-2:123456789012:alerts", "protocol": "sqs",
                   "endpoint": "arn:aws:sqs:us-east-2:123456789012:inbox",
                   "raw_message_delivery": true, "filter_policy": {"level": ["high"]}})
        );
    }
}

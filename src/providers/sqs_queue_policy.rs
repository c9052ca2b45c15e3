use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName as Qa;
use serde_json::Value;

use super::sqs_queue::NO_QUEUE;
use super::Typed;
use super::{
    absent, attrs, json_text, parse_json_text, Attrs, Created, Ctx, Observed, Provider,
    ProviderError, ReadResult, Resource, Update,
};
use crate::schema::{
    check_policy_document, Actions, ActsOn, Attr, Names, Part, Prop, Props, Schema, Service, Type,
};

/// The queue's access policy; without one, an SNS topic cannot deliver to the queue.
pub struct SqsQueuePolicy;

static SCHEMA: Schema = Schema {
    type_name: "aws_sqs_queue_policy",
    service: Service::Sqs,
    doc: "The access policy of an SQS queue. Its id is the queue URL.",
    props: &[
        Prop::new("queue_url", Type::String, "URL of the queue.")
            .takes(&[("aws_sqs_queue", Names::Url)])
            .required()
            .force_new(),
        Prop::new(
            "policy",
            Type::Policy,
            "Policy document (map or JSON string).",
        )
        .required()
        .check(check_policy_document),
    ],
    attrs: &[Attr::new("id", "Queue URL.")],
    identity: &["queue_url"],
    id_format: Some("{queue_url}"),
    names: &[],
    part: Part::QueuePolicy,
    actions: Actions {
        read: &["sqs:GetQueueAttributes"],
        create: &["sqs:SetQueueAttributes"],
        update: &["sqs:SetQueueAttributes"],
        delete: &["sqs:SetQueueAttributes"],
        on: ActsOn::Parent("queue_url", "aws_sqs_queue"),
    },
    ..Schema::BASE
};

impl Typed for SqsQueuePolicy {
    const SCHEMA: &'static Schema = &SCHEMA;
}

async fn put_policy(cx: &Ctx, url: &str, policy: &str) -> Result<(), ProviderError> {
    send!(cx
        .sqs()
        .set_queue_attributes()
        .queue_url(url)
        .attributes(Qa::Policy, policy))?;
    Ok(())
}

fn policy_text(r: &Resource<'_>) -> Result<String, ProviderError> {
    let policy = r
        .props
        .get("policy")
        .ok_or_else(|| ProviderError::refused("property `policy` is missing"))?;
    // Send compact JSON whatever the user's layout: AWS stores the text as given.
    Ok(match policy {
        Value::String(s) => {
            serde_json::from_str::<Value>(s).map_or_else(|_| s.clone(), |v| v.to_string())
        }
        other => json_text(other),
    })
}

#[async_trait]
impl Provider for SqsQueuePolicy {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let url = r.required_str("queue_url")?;
        put_policy(cx, url, &policy_text(r)?).await?;
        Ok(Created::new(
            url.to_string(),
            attrs([("id", Value::from(url))]),
        ))
    }

    async fn read(&self, cx: &Ctx, url: &str) -> ReadResult {
        let got = send!(cx
            .sqs()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(Qa::Policy));
        let Some(out) = absent(got, NO_QUEUE)? else {
            return Ok(None);
        };
        let Some(props) = props_of(url, out.attributes.unwrap_or_default()) else {
            return Ok(None);
        };
        Ok(Some(Observed {
            props,
            attrs: attrs([("id", Value::from(url))]),
            owner: None,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let Update { id: url, r, .. } = *u;
        put_policy(cx, url, &policy_text(r)?).await?;
        Ok(attrs([("id", Value::from(url))]))
    }

    async fn delete(&self, cx: &Ctx, url: &str, _props: &Props) -> Result<(), ProviderError> {
        absent(put_policy(cx, url, "").await, NO_QUEUE).map(|_| ())
    }
}

/// The queue's `Policy` attribute as the stack file names it; `None` when
/// the queue has none (the policy resource is gone).
fn props_of(url: &str, mut attributes: std::collections::HashMap<Qa, String>) -> Option<Props> {
    let policy = attributes.remove(&Qa::Policy).filter(|p| !p.is_empty())?;
    let mut props = Props::new();
    props.insert("queue_url".into(), Value::from(url));
    props.insert("policy".into(), parse_json_text(&policy));
    Some(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_policy_is_its_policy_attribute_parsed() {
        let url = "https://sqs.us-east-2.amazonaws.com/123456789012/q";
        let policy = r#"{"Version":"2012-10-17","Statement":[]}"#.to_string();
        let props = props_of(url, [(Qa::Policy, policy)].into()).unwrap();
        assert_eq!(props["queue_url"], url);
        assert_eq!(
            props["policy"],
            serde_json::json!({"Version": "2012-10-17", "Statement": []})
        );
        assert!(props_of(url, [(Qa::Policy, String::new())].into()).is_none());
        assert!(props_of(url, std::collections::HashMap::new()).is_none());
    }
}

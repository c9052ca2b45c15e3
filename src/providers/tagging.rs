//! Tag calls, one set per service family (the schema's `tagging` names the
//! family): every taggable type lists, adds and removes tags through these,
//! and an update changes them with one `sync`.

use serde_json::Value;

use super::{absent, tag_changes, Ctx, ProviderError};
use crate::schema::Tagging;

type Tags = Vec<(String, String)>;

/// Applies the change from `old` to `new` tags on `target` (what the family
/// keys tags by: a name, an ARN, a URL or an id): removals first, then
/// additions and new values.
pub async fn sync(
    family: Tagging,
    cx: &Ctx,
    target: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Result<(), ProviderError> {
    let (set, remove) = tag_changes(old, new);
    if !remove.is_empty() {
        untag(family, cx, target, remove).await?;
    }
    if !set.is_empty() {
        tag(family, cx, target, set).await?;
    }
    Ok(())
}

/// The tags on `target`: empty when it is gone.
pub async fn list(family: Tagging, cx: &Ctx, target: &str) -> Result<Tags, ProviderError> {
    let pairs = |tags: Option<Vec<(String, String)>>| Ok(tags.unwrap_or_default());
    match family {
        Tagging::Logs => log_group_tags(cx, target).await,
        Tagging::CloudWatch => {
            let out = cx
                .cloudwatch()
                .list_tags_for_resource()
                .resource_arn(target);
            let gone = &["ResourceNotFound", "ResourceNotFoundException"];
            let out = absent(send!(out), gone)?;
            pairs(out.and_then(|o| o.tags).map(|t| {
                t.into_iter()
                    .filter_map(|t| Some((t.key?, t.value?)))
                    .collect()
            }))
        }
        Tagging::IamRole => {
            let out = send!(cx.iam().list_role_tags().role_name(target));
            let out = absent(out, &["NoSuchEntity"])?;
            pairs(out.map(|o| o.tags.into_iter().map(|t| (t.key, t.value)).collect()))
        }
        Tagging::IamPolicy => {
            let out = send!(cx.iam().list_policy_tags().policy_arn(target));
            let out = absent(out, &["NoSuchEntity"])?;
            pairs(out.map(|o| o.tags.into_iter().map(|t| (t.key, t.value)).collect()))
        }
        Tagging::Sns => {
            let out = cx.sns().list_tags_for_resource().resource_arn(target);
            let out = absent(send!(out), &["NotFound", "ResourceNotFound"])?;
            pairs(
                out.and_then(|o| o.tags)
                    .map(|t| t.into_iter().map(|t| (t.key, t.value)).collect()),
            )
        }
        Tagging::Sqs => {
            let out = send!(cx.sqs().list_queue_tags().queue_url(target));
            let out = absent(out, super::sqs_queue::NO_QUEUE)?;
            pairs(out.and_then(|o| o.tags).map(|t| t.into_iter().collect()))
        }
        Tagging::Lambda | Tagging::Ec2 | Tagging::None => Err(ProviderError::refused(format!(
            "{family:?} tags come with the resource's own read"
        ))),
    }
}

#[allow(deprecated)] // moto has no ListTagsForResource for log groups
async fn log_group_tags(cx: &Ctx, name: &str) -> Result<Tags, ProviderError> {
    let out = send!(cx.logs().list_tags_log_group().log_group_name(name));
    let out = absent(out, &["ResourceNotFoundException"])?;
    Ok(out
        .and_then(|o| o.tags)
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// Adds or overwrites `tags` on `target`.
pub async fn tag(family: Tagging, cx: &Ctx, target: &str, tags: Tags) -> Result<(), ProviderError> {
    match family {
        #[allow(deprecated)] // moto has no TagResource for log groups
        Tagging::Logs => {
            let req = cx.logs().tag_log_group().log_group_name(target);
            send!(req.set_tags(Some(tags.into_iter().collect()))).map(drop)
        }
        Tagging::CloudWatch => {
            let req = cx.cloudwatch().tag_resource().resource_arn(target);
            send!(req.set_tags(Some(cloudwatch(tags)))).map(drop)
        }
        Tagging::IamRole => {
            let req = cx
                .iam()
                .tag_role()
                .role_name(target)
                .set_tags(Some(iam(tags)?));
            send!(req).map(drop)
        }
        Tagging::IamPolicy => {
            let req = cx
                .iam()
                .tag_policy()
                .policy_arn(target)
                .set_tags(Some(iam(tags)?));
            send!(req).map(drop)
        }
        Tagging::Lambda => {
            let req = cx.lambda().tag_resource().resource(target);
            send!(req.set_tags(Some(tags.into_iter().collect()))).map(drop)
        }
        Tagging::Sns => {
            let req = cx
                .sns()
                .tag_resource()
                .resource_arn(target)
                .set_tags(Some(sns(tags)?));
            send!(req).map(drop)
        }
        Tagging::Sqs => {
            let req = cx.sqs().tag_queue().queue_url(target);
            send!(req.set_tags(Some(tags.into_iter().collect()))).map(drop)
        }
        Tagging::Ec2 => {
            let req = cx
                .ec2()
                .create_tags()
                .resources(target)
                .set_tags(Some(ec2(tags)));
            send!(req).map(drop)
        }
        Tagging::None => Ok(()),
    }
}

/// Removes the tags with these keys from `target`.
pub async fn untag(
    family: Tagging,
    cx: &Ctx,
    target: &str,
    keys: Vec<String>,
) -> Result<(), ProviderError> {
    match family {
        #[allow(deprecated)] // moto has no UntagResource for log groups
        Tagging::Logs => {
            let req = cx.logs().untag_log_group().log_group_name(target);
            send!(req.set_tags(Some(keys))).map(drop)
        }
        Tagging::CloudWatch => {
            let req = cx.cloudwatch().untag_resource().resource_arn(target);
            send!(req.set_tag_keys(Some(keys))).map(drop)
        }
        Tagging::IamRole => {
            let req = cx
                .iam()
                .untag_role()
                .role_name(target)
                .set_tag_keys(Some(keys));
            send!(req).map(drop)
        }
        Tagging::IamPolicy => {
            let req = cx
                .iam()
                .untag_policy()
                .policy_arn(target)
                .set_tag_keys(Some(keys));
            send!(req).map(drop)
        }
        Tagging::Lambda => {
            let req = cx
                .lambda()
                .untag_resource()
                .resource(target)
                .set_tag_keys(Some(keys));
            send!(req).map(drop)
        }
        Tagging::Sns => {
            let req = cx
                .sns()
                .untag_resource()
                .resource_arn(target)
                .set_tag_keys(Some(keys));
            send!(req).map(drop)
        }
        Tagging::Sqs => {
            let req = cx
                .sqs()
                .untag_queue()
                .queue_url(target)
                .set_tag_keys(Some(keys));
            send!(req).map(drop)
        }
        Tagging::Ec2 => {
            let keys = keys.into_iter();
            let keys = keys.map(|k| aws_sdk_ec2::types::Tag::builder().key(k).build());
            let req = cx.ec2().delete_tags().resources(target);
            send!(req.set_tags(Some(keys.collect()))).map(drop)
        }
        Tagging::None => Ok(()),
    }
}

/// Tags in the form IAM takes.
pub fn iam(tags: Tags) -> Result<Vec<aws_sdk_iam::types::Tag>, ProviderError> {
    let tag = |(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build();
    let built: Result<Vec<_>, _> = tags.into_iter().map(tag).collect();
    built.map_err(|e| ProviderError::refused(e.to_string()))
}

/// Tags in the form SNS takes.
pub fn sns(tags: Tags) -> Result<Vec<aws_sdk_sns::types::Tag>, ProviderError> {
    let tag = |(k, v)| aws_sdk_sns::types::Tag::builder().key(k).value(v).build();
    let built: Result<Vec<_>, _> = tags.into_iter().map(tag).collect();
    built.map_err(|e| ProviderError::refused(e.to_string()))
}

/// Tags in the form EC2 takes.
pub fn ec2(tags: Tags) -> Vec<aws_sdk_ec2::types::Tag> {
    let tag = |(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    tags.into_iter().map(tag).collect()
}

/// Tags in the form CloudWatch takes.
pub fn cloudwatch(tags: Tags) -> Vec<aws_sdk_cloudwatch::types::Tag> {
    let tag = |(k, v)| {
        aws_sdk_cloudwatch::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
    };
    tags.into_iter().map(tag).collect()
}

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::Typed;
use super::{
    absent, attrs, aws, check_name, observed_by_name, split_tags, tagging, tags_of_each, tags_or,
    Attrs, BatchResult, Created, Ctx, Observed, Provider, ProviderError, ReadResult, Resource,
    Update,
};
use crate::schema::{
    Actions, ActsOn, Attr, Default, Names, Part, Prop, Props, Schema, Service, Tagging, Type,
};

pub struct LogGroup;

/// The values PutRetentionPolicy accepts.
pub const RETENTION_DAYS: &[i64] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

fn check_retention(v: &Value) -> Result<(), String> {
    match v.as_i64() {
        Some(0) => Ok(()), // never expire
        Some(n) if RETENTION_DAYS.contains(&n) => Ok(()),
        _ => Err(format!(
            "must be 0 (never expire) or one of {}",
            RETENTION_DAYS
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

pub fn check_log_group_name(v: &Value) -> Result<(), String> {
    check_name(
        v,
        512,
        "._-/#",
        "log group names use letters, digits and ._-/#",
    )
}

static SCHEMA: Schema = Schema {
    type_name: "aws_cloudwatch_log_group",
    service: Service::Logs,
    doc: "A CloudWatch Logs log group. Its id is the name.",
    props: &[
        Prop::new("name", Type::String, "Log group name.")
            .required()
            .force_new()
            .check(check_log_group_name),
        Prop::new(
            "retention_in_days",
            Type::Int,
            "Days to keep events; 0 keeps them forever.",
        )
        .default(Default::Int(0))
        .check(check_retention),
        Prop::tags(),
    ],
    attrs: &[
        Attr::new("arn", "Log group ARN (without the trailing :*)."),
        Attr::new("id", "Log group name."),
    ],
    tagging: Tagging::Logs,
    identity: &["name"],
    arn_format: Some("arn:aws:logs:{region}:{account}:log-group:{name}"),
    id_format: Some("{name}"),
    batch_read: true,
    names: &[
        ("arn", Names::Arn),
        ("name", Names::Name),
        ("id", Names::Name),
    ],
    part: Part::LogGroup,
    actions: Actions {
        read: &["logs:DescribeLogGroups"],
        create: &["logs:CreateLogGroup", "logs:PutRetentionPolicy"],
        update: &["logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy"],
        delete: &["logs:DeleteLogGroup"],
        on: ActsOn::Itself,
    },
    ..Schema::BASE
};

impl Typed for LogGroup {
    const SCHEMA: &'static Schema = &SCHEMA;
}

fn group_attrs(cx: &Ctx, name: &str, account: &str) -> Map<String, Value> {
    let arn = format!("arn:aws:logs:{}:{account}:log-group:{name}", cx.region());
    attrs([("arn", arn.into()), ("id", name.into())])
}

async fn describe(
    cx: &Ctx,
    name: &str,
) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>, ProviderError> {
    let mut pages = cx
        .logs()
        .describe_log_groups()
        .log_group_name_prefix(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(aws)?;
        if let Some(g) = page
            .log_groups
            .unwrap_or_default()
            .into_iter()
            .find(|g| g.log_group_name.as_deref() == Some(name))
        {
            return Ok(Some(g));
        }
    }
    Ok(None)
}

/// A log group as the stack file describes it, with its tags if read.
async fn observe(
    cx: &Ctx,
    group: aws_sdk_cloudwatchlogs::types::LogGroup,
    tags: Option<Vec<(String, String)>>,
) -> Result<Observed, ProviderError> {
    let name = group.log_group_name.clone().unwrap_or_default();
    let arn = group_attrs(cx, &name, &account_of(group.arn.as_deref()));
    let tags = match tags {
        Some(tags) => tags,
        None => {
            tags_or(
                cx,
                arn["arn"].as_str().unwrap_or_default(),
                tagging::list(SCHEMA.tagging, cx, &name),
            )
            .await?
        }
    };
    let (tags, owner) = split_tags(tags);
    let mut props = props_of(&group);
    props.insert("tags".into(), tags);
    Ok(Observed {
        props,
        attrs: arn,
        owner,
    })
}

/// DescribeLogGroups' answer as the stack file names it (tags aside): no
/// retention is 0, "never expire".
fn props_of(group: &aws_sdk_cloudwatchlogs::types::LogGroup) -> Props {
    let name = group.log_group_name.clone().unwrap_or_default();
    let retention = group.retention_in_days.unwrap_or(0);
    Props::from_iter([
        ("name".to_string(), Value::from(name)),
        ("retention_in_days".to_string(), Value::from(retention)),
    ])
}

/// The longest prefix all names share.
fn common_prefix(names: &[String]) -> &str {
    let Some(first) = names.first() else {
        return "";
    };
    let mut len = first.len();
    for n in &names[1..] {
        len = first
            .bytes()
            .zip(n.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // Not inside a character.
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    &first[..len]
}

/// The groups of these names (sorted) that exist.
async fn describe_many(
    cx: &Ctx,
    sorted: &[String],
) -> Result<Vec<aws_sdk_cloudwatchlogs::types::LogGroup>, ProviderError> {
    use futures::{StreamExt, TryStreamExt};
    let prefix = common_prefix(sorted);
    if prefix.is_empty() {
        let lookups = sorted.iter().cloned();
        let found: Vec<_> =
            futures::stream::iter(lookups.map(|name| async move { describe(cx, &name).await }))
                .buffer_unordered(16)
                .try_collect()
                .await?;
        return Ok(found.into_iter().flatten().collect());
    }
    let last = sorted.last().cloned().unwrap_or_default();
    let mut groups = Vec::new();
    let mut pages = cx
        .logs()
        .describe_log_groups()
        .log_group_name_prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for g in page.map_err(aws)?.log_groups.unwrap_or_default() {
            let name = g.log_group_name.clone().unwrap_or_default();
            if name > last {
                return Ok(groups);
            }
            if sorted.binary_search(&name).is_ok() {
                groups.push(g);
            }
        }
    }
    Ok(groups)
}

fn account_of(arn: Option<&str>) -> String {
    arn.and_then(|a| a.split(':').nth(4))
        .unwrap_or_default()
        .to_string()
}

async fn set_retention(cx: &Ctx, name: &str, days: i64) -> Result<(), ProviderError> {
    if days == 0 {
        send!(cx.logs().delete_retention_policy().log_group_name(name))?;
    } else {
        send!(cx
            .logs()
            .put_retention_policy()
            .log_group_name(name)
            .retention_in_days(days as i32))?;
    }
    Ok(())
}

#[async_trait]
impl Provider for LogGroup {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let name = r.required_str("name")?;
        send!(cx
            .logs()
            .create_log_group()
            .log_group_name(name)
            .set_tags(Some(r.tags_with_ownership(cx).into_iter().collect())))?;
        let finish = async {
            if let Some(days) = r.i64("retention_in_days").filter(|d| *d != 0) {
                set_retention(cx, name, days).await?;
            }
            let group = describe(cx, name).await?;
            Ok(account_of(group.as_ref().and_then(|g| g.arn.as_deref())))
        };
        let account = finish
            .await
            .map_err(|e: ProviderError| e.after_create(name))?;
        Ok(Created::new(
            name.to_string(),
            group_attrs(cx, name, &account),
        ))
    }

    async fn read(&self, cx: &Ctx, name: &str) -> ReadResult {
        if cx.has_known_tags() {
            return match describe(cx, name).await? {
                Some(group) => Ok(Some(observe(cx, group, None).await?)),
                None => Ok(None),
            };
        }
        let (group, tags) =
            tokio::join!(describe(cx, name), tagging::list(SCHEMA.tagging, cx, name));
        match group? {
            Some(group) => Ok(Some(observe(cx, group, Some(tags?)).await?)),
            None => Ok(None),
        }
    }

    /// One describe call: the look before a create reads no tags.
    async fn exists(&self, cx: &Ctx, name: &str) -> Result<Option<bool>, ProviderError> {
        Ok(Some(describe(cx, name).await?.is_some()))
    }

    /// Groups by name: pages of the groups under their common prefix, up to the
    /// last name wanted; one lookup each, in parallel, when they share no prefix.
    /// Without tags from the bulk read, each group's tag call (by name) goes out
    /// beside them, not after.
    async fn read_many(&self, cx: &Ctx, names: &[String]) -> BatchResult {
        let mut sorted = names.to_vec();
        sorted.sort();
        let tags = tags_of_each(cx, names.to_vec(), |name| async move {
            tagging::list(SCHEMA.tagging, cx, &name).await
        });
        let (groups, mut tags) = tokio::try_join!(describe_many(cx, &sorted), tags)?;
        let observing = groups.into_iter().map(|g| {
            let tags = tags.remove(g.log_group_name.as_deref().unwrap_or_default());
            observe(cx, g, tags)
        });
        observed_by_name(names, "name", observing).await
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let (name, r, changed) = (u.id, u.r, u.changed);
        if changed.contains(&"retention_in_days") {
            set_retention(cx, name, r.i64("retention_in_days").unwrap_or(0)).await?;
        }
        let group = describe(cx, name).await?;
        Ok(group_attrs(
            cx,
            name,
            &account_of(group.as_ref().and_then(|g| g.arn.as_deref())),
        ))
    }

    async fn delete(&self, cx: &Ctx, name: &str, _props: &Props) -> Result<(), ProviderError> {
        let deleted = send!(cx.logs().delete_log_group().log_group_name(name));
        absent(deleted, &["ResourceNotFoundException"]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_group_without_retention_reads_as_never_expiring() {
        use aws_sdk_cloudwatchlogs::types::LogGroup;
        let kept = LogGroup::builder()
            .log_group_name("app")
            .retention_in_days(14)
            .build();
        let forever = LogGroup::builder().log_group_name("app").build();
        assert_eq!(
            Value::Object(props_of(&kept)),
            json!({"name": "app", "retention_in_days": 14})
        );
        assert_eq!(props_of(&forever)["retention_in_days"], json!(0));
    }
}

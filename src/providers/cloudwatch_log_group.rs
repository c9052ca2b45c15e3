use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{
    absent, attrs, aws, check_name, split_tags, sync_tags, AwsError, Created, Ctx, Observed,
    Provider, Resource,
};
use crate::schema::{Attr, Default, Kind, Prop, Props, Schema, Type};

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
    kind: Kind::Resource,
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
        Prop::new("tags", Type::StringMap, "Tags.").default(Default::EmptyMap),
    ],
    attrs: &[
        Attr {
            name: "arn",
            doc: "Log group ARN (without the trailing :*).",
        },
        Attr {
            name: "id",
            doc: "Log group name.",
        },
    ],
    taggable: true,
    identity: &["name"],
    in_use_blocks_delete: false,
    arn_format: Some("arn:aws:logs:{region}:{account}:log-group:{name}"),
    cross_check: None,
};

fn group_attrs(cx: &Ctx, name: &str, account: &str) -> Map<String, Value> {
    let arn = format!("arn:aws:logs:{}:{account}:log-group:{name}", cx.region());
    attrs([("arn", arn.into()), ("id", name.into())])
}

async fn describe(
    cx: &Ctx,
    name: &str,
) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>, AwsError> {
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

fn account_of(arn: Option<&str>) -> String {
    arn.and_then(|a| a.split(':').nth(4))
        .unwrap_or_default()
        .to_string()
}

async fn set_retention(cx: &Ctx, name: &str, days: i64) -> Result<(), AwsError> {
    if days == 0 {
        cx.logs()
            .delete_retention_policy()
            .log_group_name(name)
            .send()
            .await
            .map_err(aws)?;
    } else {
        cx.logs()
            .put_retention_policy()
            .log_group_name(name)
            .retention_in_days(days as i32)
            .send()
            .await
            .map_err(aws)?;
    }
    Ok(())
}

#[async_trait]
impl Provider for LogGroup {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, AwsError> {
        let name = r.required_str("name")?;
        cx.logs()
            .create_log_group()
            .log_group_name(name)
            .set_tags(Some(r.tags_with_ownership(cx).into_iter().collect()))
            .send()
            .await
            .map_err(aws)?;
        let finish = async {
            if let Some(days) = r.i64("retention_in_days").filter(|d| *d != 0) {
                set_retention(cx, name, days).await?;
            }
            let group = describe(cx, name).await?;
            Ok(account_of(group.as_ref().and_then(|g| g.arn.as_deref())))
        };
        let account = finish.await.map_err(|e: AwsError| e.after_create(name))?;
        Ok(Created {
            attrs: group_attrs(cx, name, &account),
            physical_id: name.to_string(),
        })
    }

    async fn read(&self, cx: &Ctx, name: &str) -> Result<Option<Observed>, AwsError> {
        let Some(group) = describe(cx, name).await? else {
            return Ok(None);
        };
        #[allow(deprecated)]
        let tags = cx
            .logs()
            .list_tags_log_group()
            .log_group_name(name)
            .send()
            .await
            .map_err(aws)?
            .tags
            .unwrap_or_default();
        let (tags, owner) = split_tags(tags);
        let mut props = Props::new();
        props.insert("name".into(), Value::from(name));
        props.insert(
            "retention_in_days".into(),
            Value::from(group.retention_in_days.unwrap_or(0)),
        );
        props.insert("tags".into(), tags);
        Ok(Some(Observed {
            props,
            attrs: group_attrs(cx, name, &account_of(group.arn.as_deref())),
            owner,
        }))
    }

    async fn update(
        &self,
        cx: &Ctx,
        name: &str,
        old: &Props,
        r: &Resource<'_>,
        changed: &[&str],
    ) -> Result<Map<String, Value>, AwsError> {
        if changed.contains(&"retention_in_days") {
            set_retention(cx, name, r.i64("retention_in_days").unwrap_or(0)).await?;
        }
        if changed.contains(&"tags") {
            #[allow(deprecated)]
            sync_tags(
                old.get("tags"),
                r.props.get("tags"),
                |keys| async move {
                    cx.logs()
                        .untag_log_group()
                        .log_group_name(name)
                        .set_tags(Some(keys))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(aws)
                },
                |tags| async move {
                    cx.logs()
                        .tag_log_group()
                        .log_group_name(name)
                        .set_tags(Some(tags.into_iter().collect()))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(aws)
                },
            )
            .await?;
        }
        let group = describe(cx, name).await?;
        Ok(group_attrs(
            cx,
            name,
            &account_of(group.as_ref().and_then(|g| g.arn.as_deref())),
        ))
    }

    async fn delete(&self, cx: &Ctx, name: &str, _props: &Props) -> Result<(), AwsError> {
        let deleted = cx
            .logs()
            .delete_log_group()
            .log_group_name(name)
            .send()
            .await;
        absent(deleted.map_err(aws), &["ResourceNotFoundException"]).map(|_| ())
    }

    async fn find(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Option<String>, AwsError> {
        let name = r.required_str("name")?;
        Ok(describe(cx, name).await?.map(|_| name.to_string()))
    }
}

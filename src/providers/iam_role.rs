use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_iam::types::Tag;
use serde_json::{Map, Value};

use super::{
    attrs, aws, check_name, decode_policy, json_text, tag_changes, user_tags, wait_for, AwsError,
    Created, Ctx, Observed, Provider, Resource,
};
use crate::schema::{check_policy_document, Attr, Default, Kind, Prop, Props, Schema, Type};

pub struct IamRole;

fn check_role_name(v: &Value) -> Result<(), String> {
    check_name(
        v,
        64,
        "+=,.@_-",
        "role names use letters, digits and +=,.@_-",
    )
}

static SCHEMA: Schema = Schema {
    type_name: "aws_iam_role",
    kind: Kind::Resource,
    doc: "An IAM role. Its id is the role name.",
    props: &[
        Prop::new("name", Type::String, "Role name.")
            .required()
            .force_new()
            .check(check_role_name),
        Prop::new("description", Type::String, "Description.").default(Default::Str("")),
        Prop::new(
            "assume_role_policy",
            Type::Policy,
            "Trust policy: who may assume the role.",
        )
        .required()
        .check(check_policy_document),
        Prop::new("tags", Type::StringMap, "Tags.").default(Default::EmptyMap),
    ],
    attrs: &[
        Attr {
            name: "arn",
            doc: "Role ARN.",
        },
        Attr {
            name: "id",
            doc: "Role name.",
        },
        Attr {
            name: "unique_id",
            doc: "The role's stable unique id.",
        },
    ],
    taggable: true,
    cross_check: None,
};

fn iam_tags(tags: Vec<(String, String)>) -> Result<Vec<Tag>, AwsError> {
    tags.into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| AwsError::local(e.to_string()))
        })
        .collect()
}

pub fn is_no_such_entity(e: &AwsError) -> bool {
    e.is("NoSuchEntity")
}

#[async_trait]
impl Provider for IamRole {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, AwsError> {
        let name = r.required_str("name")?;
        let mut req = cx
            .iam()
            .create_role()
            .role_name(name)
            .assume_role_policy_document(json_text(
                r.props.get("assume_role_policy").unwrap_or(&Value::Null),
            ))
            .set_tags(Some(iam_tags(r.tags_with_ownership(cx))?));
        if let Some(d) = r.str("description").filter(|d| !d.is_empty()) {
            req = req.description(d);
        }
        let role = req
            .send()
            .await
            .map_err(aws)?
            .role
            .ok_or_else(|| AwsError::local("CreateRole returned no role"))?;
        // IAM is eventually consistent: wait until the role can be read back
        // before anything (Lambda above all) is handed its ARN.
        wait_for(
            "the role to become visible",
            Duration::from_secs(60),
            || async {
                match cx
                    .iam()
                    .get_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(aws)
                {
                    Ok(_) => Ok(Some(())),
                    Err(e) if is_no_such_entity(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        Ok(Created {
            physical_id: role.role_name.clone(),
            attrs: attrs([
                ("arn", role.arn.into()),
                ("id", role.role_name.into()),
                ("unique_id", role.role_id.into()),
            ]),
        })
    }

    async fn read(&self, cx: &Ctx, name: &str) -> Result<Option<Observed>, AwsError> {
        let role = match cx
            .iam()
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(aws)
        {
            Ok(out) => out
                .role
                .ok_or_else(|| AwsError::local("GetRole returned no role"))?,
            Err(e) if is_no_such_entity(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        // GetRole may omit tags; ListRoleTags is authoritative.
        let tags = cx
            .iam()
            .list_role_tags()
            .role_name(name)
            .send()
            .await
            .map_err(aws)?
            .tags;
        let mut props = Props::new();
        props.insert("name".into(), Value::from(role.role_name.clone()));
        props.insert(
            "description".into(),
            Value::from(role.description.unwrap_or_default()),
        );
        if let Some(doc) = &role.assume_role_policy_document {
            props.insert("assume_role_policy".into(), decode_policy(doc));
        }
        props.insert(
            "tags".into(),
            user_tags(tags.into_iter().map(|t| (t.key, t.value))),
        );
        Ok(Some(Observed {
            props,
            attrs: attrs([
                ("arn", role.arn.into()),
                ("id", role.role_name.into()),
                ("unique_id", role.role_id.into()),
            ]),
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
        if changed.contains(&"assume_role_policy") {
            cx.iam()
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(json_text(
                    r.props.get("assume_role_policy").unwrap_or(&Value::Null),
                ))
                .send()
                .await
                .map_err(aws)?;
        }
        if changed.contains(&"description") {
            cx.iam()
                .update_role()
                .role_name(name)
                .description(r.str("description").unwrap_or_default())
                .send()
                .await
                .map_err(aws)?;
        }
        if changed.contains(&"tags") {
            let (set, remove) = tag_changes(old.get("tags"), r.props.get("tags"));
            if !remove.is_empty() {
                cx.iam()
                    .untag_role()
                    .role_name(name)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(aws)?;
            }
            if !set.is_empty() {
                cx.iam()
                    .tag_role()
                    .role_name(name)
                    .set_tags(Some(iam_tags(set)?))
                    .send()
                    .await
                    .map_err(aws)?;
            }
        }
        let role = cx
            .iam()
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(aws)?
            .role;
        Ok(role
            .map(|role| {
                attrs([
                    ("arn", role.arn.into()),
                    ("id", role.role_name.into()),
                    ("unique_id", role.role_id.into()),
                ])
            })
            .unwrap_or_default())
    }

    async fn delete(&self, cx: &Ctx, name: &str, _props: &Props) -> Result<(), AwsError> {
        match cx
            .iam()
            .delete_role()
            .role_name(name)
            .send()
            .await
            .map_err(aws)
        {
            Err(e) if !is_no_such_entity(&e) => Err(e),
            _ => Ok(()),
        }
    }

    async fn find(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Option<String>, AwsError> {
        let name = r.required_str("name")?;
        Ok(self.read(cx, name).await?.map(|_| name.to_string()))
    }
}

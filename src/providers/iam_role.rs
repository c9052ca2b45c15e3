use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::Typed;
use super::{
    absent, attrs, aws, check_name, decode_policy, json_text, split_tags, tagging, wait_for, Attrs,
    Created, Ctx, Observed, Provider, ProviderError, ReadResult, Resource, Update,
};
use crate::schema::{
    check_policy_document, Actions, ActsOn, Attr, Default, Names, Part, Prop, Props, Schema,
    Service, Tagging, Type,
};

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
    service: Service::Iam,
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
        Prop::new(
            "permissions_boundary",
            Type::String,
            "ARN of the managed policy that bounds what the role's policies can grant. Left out: none.",
        )
        .takes(&[("aws_iam_policy", Names::Arn)])
        .default(Default::Unset)
        .check(super::iam_policy::check_policy_arn),
        Prop::tags(),
    ],
    attrs: &[
        Attr::new("arn", "Role ARN."),
        Attr::new("id", "Role name."),
        Attr::new("unique_id", "The role's stable unique id."),
    ],
    tagging: Tagging::IamRole,
    identity: &["name"],
    arn_format: Some("arn:aws:iam::{account}:role/{name}"),
    id_format: Some("{name}"),
    names: &[
        ("arn", Names::Arn),
        ("name", Names::Name),
        ("id", Names::Name),
        ("unique_id", Names::Id),
    ],
    part: Part::Role,
    actions: Actions {
        read: &["iam:GetRole"],
        // IAM asks for PutRolePermissionsBoundary on a create with one too.
        create: &["iam:CreateRole", "iam:PutRolePermissionsBoundary"],
        update: &[
            "iam:UpdateAssumeRolePolicy",
            "iam:UpdateRole",
            "iam:PutRolePermissionsBoundary",
            "iam:DeleteRolePermissionsBoundary",
        ],
        delete: &["iam:DeleteRole"],
        on: ActsOn::Itself,
    },
    ..Schema::BASE
};

impl Typed for IamRole {
    const SCHEMA: &'static Schema = &SCHEMA;
}

/// What IAM answers for a role, policy or attachment that does not exist.
pub const NO_SUCH_ENTITY: &[&str] = &["NoSuchEntity"];

#[async_trait]
impl Provider for IamRole {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let name = r.required_str("name")?;
        let mut req = cx
            .iam()
            .create_role()
            .role_name(name)
            .assume_role_policy_document(json_text(
                r.props.get("assume_role_policy").unwrap_or(&Value::Null),
            ))
            .set_tags(Some(tagging::iam(r.tags_with_ownership(cx))?));
        if let Some(d) = r.str("description").filter(|d| !d.is_empty()) {
            req = req.description(d);
        }
        let role = send!(req.set_permissions_boundary(r.str(BOUNDARY).map(str::to_string)))?
            .role
            .ok_or_else(|| ProviderError::unexpected("CreateRole returned no role"))?;
        // IAM is eventually consistent: wait until the role can be read back
        // before anything (Lambda above all) is handed its ARN.
        wait_for(
            cx,
            "the role to become visible",
            Duration::from_secs(60),
            || async {
                let got = send!(cx.iam().get_role().role_name(name));
                Ok(absent(got, NO_SUCH_ENTITY)?.map(|_| ()))
            },
        )
        .await
        .map_err(|e| e.after_create(name))?;
        Ok(Created::new(
            role.role_name.clone(),
            attrs([
                ("arn", role.arn.into()),
                ("id", role.role_name.into()),
                ("unique_id", role.role_id.into()),
            ]),
        ))
    }

    async fn read(&self, cx: &Ctx, name: &str) -> ReadResult {
        // GetRole may omit tags; ListRoleTags is authoritative. Both at once.
        let (got, tags) = tokio::join!(
            cx.iam().get_role().role_name(name).send(),
            tagging::list(SCHEMA.tagging, cx, name)
        );
        let Some(out) = absent(got.map_err(aws), NO_SUCH_ENTITY)? else {
            return Ok(None);
        };
        let role = out
            .role
            .ok_or_else(|| ProviderError::unexpected("GetRole returned no role"))?;
        let tags = tags?;
        let mut props = props_of(&role);
        let (tags, owner) = split_tags(tags);
        props.insert("tags".into(), tags);
        Ok(Some(Observed {
            props,
            attrs: attrs([
                ("arn", role.arn.into()),
                ("id", role.role_name.into()),
                ("unique_id", role.role_id.into()),
            ]),
            owner,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let (name, r, changed) = (u.id, u.r, u.changed);
        if changed.contains(&"assume_role_policy") {
            send!(cx
                .iam()
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(json_text(
                    r.props.get("assume_role_policy").unwrap_or(&Value::Null),
                )))?;
        }
        if changed.contains(&BOUNDARY) {
            set_boundary(cx, name, r.str(BOUNDARY)).await?;
        }
        if changed.contains(&"description") {
            send!(cx
                .iam()
                .update_role()
                .role_name(name)
                .description(r.str("description").unwrap_or_default()))?;
        }
        let role = send!(cx.iam().get_role().role_name(name))?.role;
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

    async fn delete(&self, cx: &Ctx, name: &str, _props: &Props) -> Result<(), ProviderError> {
        let deleted = send!(cx.iam().delete_role().role_name(name));
        absent(deleted, NO_SUCH_ENTITY).map(|_| ())
    }
}

const BOUNDARY: &str = "permissions_boundary";

async fn set_boundary(cx: &Ctx, name: &str, arn: Option<&str>) -> Result<(), ProviderError> {
    match arn {
        Some(arn) => send!(cx
            .iam()
            .put_role_permissions_boundary()
            .role_name(name)
            .permissions_boundary(arn))
        .map(drop),
        None => send!(cx.iam().delete_role_permissions_boundary().role_name(name)).map(drop),
    }
}

/// GetRole's answer as the stack file names it (tags aside): the trust
/// policy URL-decoded into JSON, and the boundary only where there is one.
fn props_of(role: &aws_sdk_iam::types::Role) -> Props {
    let mut props = Props::new();
    let boundary = role.permissions_boundary.as_ref();
    if let Some(arn) = boundary.and_then(|b| b.permissions_boundary_arn.clone()) {
        props.insert(BOUNDARY.into(), Value::from(arn));
    }
    props.insert("name".into(), Value::from(role.role_name.clone()));
    let description = role.description.clone().unwrap_or_default();
    props.insert("description".into(), Value::from(description));
    if let Some(doc) = &role.assume_role_policy_document {
        props.insert("assume_role_policy".into(), decode_policy(doc));
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roles_trust_policy_reads_decoded() {
        let role = aws_sdk_iam::types::Role::builder()
            .path("/")
            .role_name("fixer")
            .role_id("AROA1")
            .arn("arn:aws:iam::123456789012:role/fixer")
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            .assume_role_policy_document("%7B%22Version%22%3A%222012-10-17%22%7D")
            .build()
            .unwrap();
        assert_eq!(
            Value::Object(props_of(&role)),
            serde_json::json!({"name": "fixer", "description": "",
                               "assume_role_policy": {"Version": "2012-10-17"}})
        );
    }
}

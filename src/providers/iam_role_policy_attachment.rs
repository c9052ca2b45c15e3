use async_trait::async_trait;
use aws_sdk_iam::types::AttachedPolicy;
use serde_json::Value;

use super::iam_role::NO_SUCH_ENTITY;
use super::id_parts;
use super::Typed;
use super::{
    absent, attrs, aws, Attrs, Created, Ctx, Observed, Provider, ProviderError, ReadResult,
    Resource, Update,
};
use crate::schema::{Actions, ActsOn, Attr, Names, Part, Prop, Props, Schema, Service, Type};

/// Attaches a managed policy (customer or AWS managed) to a role.
pub struct RolePolicyAttachment;

static SCHEMA: Schema = Schema {
    type_name: "aws_iam_role_policy_attachment",
    service: Service::Iam,
    doc: "Attaches a managed policy to a role. Its id is `<role>/<policy_arn>`.",
    props: &[
        Prop::new("role", Type::String, "Role name.")
            .takes(&[("aws_iam_role", Names::Name)])
            .required()
            .force_new(),
        Prop::new("policy_arn", Type::String, "ARN of the managed policy, e.g. arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole.")
            .takes(&[("aws_iam_policy", Names::Arn)])
            .required()
            .force_new()
            .check(super::iam_policy::check_policy_arn),
    ],
    attrs: &[Attr::new("id", "`<role>/<policy_arn>`.")],
    identity: &["role", "policy_arn"],
    id_format: Some("{role}/{policy_arn}"),
    names: &[],
    part: Part::PolicyAttachment,
    actions: Actions {
        read: &["iam:ListAttachedRolePolicies"],
        create: &["iam:AttachRolePolicy"],
        update: &[],
        delete: &["iam:DetachRolePolicy"],
        on: ActsOn::Parent("role", "aws_iam_role"),
    },
    ..Schema::BASE
};

impl Typed for RolePolicyAttachment {
    const SCHEMA: &'static Schema = &SCHEMA;
}

/// The attachment `id` (`role/arn`) as the stack file names it, if
/// ListAttachedRolePolicies lists the policy among the role's.
fn observed_among(listed: &[AttachedPolicy], id: &str) -> Option<Observed> {
    let (role, arn) = id_parts(&SCHEMA, id).ok()?;
    listed
        .iter()
        .find(|p| p.policy_arn.as_deref() == Some(arn))?;
    let mut props = Props::new();
    props.insert("role".into(), Value::from(role));
    props.insert("policy_arn".into(), Value::from(arn));
    Some(Observed {
        props,
        attrs: attrs([("id", Value::from(id))]),
        owner: None,
    })
}

#[async_trait]
impl Provider for RolePolicyAttachment {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let (role, arn) = (r.required_str("role")?, r.required_str("policy_arn")?);
        send!(cx
            .iam()
            .attach_role_policy()
            .role_name(role)
            .policy_arn(arn))?;
        let id = format!("{role}/{arn}");
        Ok(Created::new(
            id.clone(),
            attrs([("id", Value::from(id.clone()))]),
        ))
    }

    async fn read(&self, cx: &Ctx, id: &str) -> ReadResult {
        let (role, _) = id_parts(&SCHEMA, id)?;
        let mut pages = cx
            .iam()
            .list_attached_role_policies()
            .role_name(role)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let Some(page) = absent(page.map_err(aws), NO_SUCH_ENTITY)? else {
                return Ok(None);
            };
            let listed = page.attached_policies.unwrap_or_default();
            if let Some(found) = observed_among(&listed, id) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn update(&self, _: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let Update { id, .. } = *u;
        Ok(attrs([("id", Value::from(id))]))
    }

    async fn delete(&self, cx: &Ctx, id: &str, _props: &Props) -> Result<(), ProviderError> {
        let (role, arn) = id_parts(&SCHEMA, id)?;
        let detached = send!(cx
            .iam()
            .detach_role_policy()
            .role_name(role)
            .policy_arn(arn));
        absent(detached, NO_SUCH_ENTITY).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_is_observed_only_when_the_role_lists_its_policy() {
        let arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";
        let listed = [AttachedPolicy::builder().policy_arn(arn).build()];
        let found = observed_among(&listed, &format!("lambda_role/{arn}")).unwrap();
        assert_eq!(
            Value::Object(found.props.into_iter().collect()),
            serde_json::json!({"role": "lambda_role", "policy_arn": arn})
        );
        assert_eq!(found.attrs["id"], format!("lambda_role/{arn}"));
        assert!(observed_among(&listed, "lambda_role/arn:aws:iam::1:policy/other").is_none());
    }
}

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::iam_role::NO_SUCH_ENTITY;
use super::Typed;
use super::{
    absent, attrs, aws, check_name, decode_policy, json_text, split_tags, tagging, Attrs, Created,
    Ctx, Observed, Provider, ProviderError, ReadResult, Resource, Update,
};
use crate::schema::{
    check_policy_document, Actions, ActsOn, Attr, Default, Names, Part, Prop, Props, Schema,
    Service, Tagging, Type,
};

/// A customer managed policy. Its id is its ARN.
pub struct IamPolicy;

/// A managed policy's ARN: AWS's own or an account's.
pub(super) fn check_policy_arn(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if s.starts_with("arn:") && s.contains(":policy/") => Ok(()),
        _ => Err("must be a policy ARN such as arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole".into()),
    }
}

static SCHEMA: Schema = Schema {
    type_name: "aws_iam_policy",
    service: Service::Iam,
    doc: "A customer managed IAM policy. Its id is the policy ARN.",
    props: &[
        Prop::new("name", Type::String, "Policy name.")
            .required()
            .force_new()
            .check(|v| {
                check_name(
                    v,
                    128,
                    "+=,.@_-",
                    "policy names use letters, digits and +=,.@_-",
                )
            }),
        Prop::new(
            "description",
            Type::String,
            "Description (cannot be changed after creation).",
        )
        .default(Default::Str(""))
        .force_new(),
        Prop::new("policy", Type::Policy, "Policy document.")
            .required()
            .check(check_policy_document),
        Prop::tags(),
    ],
    attrs: &[
        Attr::new("arn", "Policy ARN."),
        Attr::new("id", "Policy ARN."),
        Attr::new("policy_id", "The policy's stable unique id."),
        Attr::new(
            "default_version_id",
            "The id of the version in force: v1, v2 and so on.",
        ),
    ],
    tagging: Tagging::IamPolicy,
    identity: &["name"],
    arn_format: Some("arn:aws:iam::{account}:policy/{name}"),
    id_format: Some("arn:aws:iam::{account}:policy/{name}"),
    names: &[
        ("arn", Names::Arn),
        ("id", Names::Arn),
        ("name", Names::Name),
        ("policy_id", Names::Id),
    ],
    part: Part::Policy,
    actions: Actions {
        read: &[
            "iam:GetPolicy",
            "iam:GetPolicyVersion",
            "iam:ListPolicyVersions",
        ],
        create: &["iam:CreatePolicy"],
        update: &[
            "iam:CreatePolicyVersion",
            "iam:DeletePolicyVersion",
            "iam:ListPolicyVersions",
        ],
        delete: &[
            "iam:ListPolicyVersions",
            "iam:DeletePolicyVersion",
            "iam:DeletePolicy",
        ],
        on: ActsOn::Itself,
    },
    ..Schema::BASE
};

impl Typed for IamPolicy {
    const SCHEMA: &'static Schema = &SCHEMA;
}

fn policy_attrs(arn: &str, policy: &aws_sdk_iam::types::Policy) -> Map<String, Value> {
    let text = |v: &Option<String>| Value::from(v.clone().unwrap_or_default());
    attrs([
        ("arn", arn.into()),
        ("id", arn.into()),
        ("policy_id", text(&policy.policy_id)),
        ("default_version_id", text(&policy.default_version_id)),
    ])
}

/// GetPolicy's policy and its default version's document (IAM gives it
/// URL-encoded) as the stack file names them, tags aside.
fn props_of(policy: &aws_sdk_iam::types::Policy, document: Option<&str>) -> Props {
    let mut props = Props::new();
    let name = policy.policy_name().unwrap_or_default();
    props.insert("name".into(), Value::from(name));
    let description = policy.description().unwrap_or_default();
    props.insert("description".into(), Value::from(description));
    if let Some(doc) = document {
        props.insert("policy".into(), decode_policy(doc));
    }
    props
}

/// The policy and its document. GetPolicyVersion needs the default version's
/// id, which GetPolicy gives; with the id the state recorded (`guess`), both
/// go out at once and the guess is kept only if GetPolicy confirms it.
async fn read_policy(cx: &Ctx, arn: &str, guess: Option<&str>) -> ReadResult {
    let version = |id: String| async move {
        let out = send!(cx.iam().get_policy_version().policy_arn(arn).version_id(id));
        out.map(|o| o.policy_version)
    };
    let guessed = async {
        match guess {
            Some(id) => Some(version(id.to_string()).await),
            None => None,
        }
    };
    let (got, tags, guessed) = tokio::join!(
        cx.iam().get_policy().policy_arn(arn).send(),
        tagging::list(SCHEMA.tagging, cx, arn),
        guessed
    );
    let Some(out) = absent(got.map_err(aws), NO_SUCH_ENTITY)? else {
        return Ok(None);
    };
    let tags = tags?;
    let policy = out
        .policy
        .ok_or_else(|| ProviderError::unexpected("GetPolicy returned no policy"))?;
    let default = policy.default_version_id.clone().unwrap_or_default();
    let version = match guessed {
        Some(Ok(v)) if guess == Some(default.as_str()) => v,
        _ => version(default).await?,
    };
    let document = version.and_then(|v| v.document);
    let mut props = props_of(&policy, document.as_deref());
    let (tags, owner) = split_tags(tags);
    props.insert("tags".into(), tags);
    Ok(Some(Observed {
        props,
        attrs: policy_attrs(arn, &policy),
        owner,
    }))
}

/// A new default version with the policy document, returning its id; a
/// policy keeps at most 5 versions, so the oldest non-default one goes first.
async fn new_default_version(
    cx: &Ctx,
    arn: &str,
    r: &Resource<'_>,
) -> Result<String, ProviderError> {
    let versions = send!(cx.iam().list_policy_versions().policy_arn(arn))?
        .versions
        .unwrap_or_default();
    if versions.len() >= 5 {
        let oldest = versions
            .iter()
            .filter(|v| !v.is_default_version)
            .min_by_key(|v| v.create_date.map(|d| d.secs()).unwrap_or(i64::MAX));
        if let Some(id) = oldest.and_then(|v| v.version_id.clone()) {
            send!(cx
                .iam()
                .delete_policy_version()
                .policy_arn(arn)
                .version_id(id))?;
        }
    }
    let created = send!(cx
        .iam()
        .create_policy_version()
        .policy_arn(arn)
        .policy_document(json_text(r.props.get("policy").unwrap_or(&Value::Null)))
        .set_as_default(true))?;
    Ok(created
        .policy_version
        .and_then(|v| v.version_id)
        .unwrap_or_default())
}

#[async_trait]
impl Provider for IamPolicy {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let mut req = cx
            .iam()
            .create_policy()
            .policy_name(r.required_str("name")?)
            .policy_document(json_text(r.props.get("policy").unwrap_or(&Value::Null)))
            .set_tags(Some(tagging::iam(r.tags_with_ownership(cx))?));
        if let Some(d) = r.str("description").filter(|d| !d.is_empty()) {
            req = req.description(d);
        }
        let policy = send!(req)?
            .policy
            .ok_or_else(|| ProviderError::unexpected("CreatePolicy returned no policy"))?;
        let arn = policy.arn.clone().unwrap_or_default();
        Ok(Created::new(arn.clone(), policy_attrs(&arn, &policy)))
    }

    async fn read(&self, cx: &Ctx, arn: &str) -> ReadResult {
        read_policy(cx, arn, None).await
    }

    async fn read_recorded(&self, cx: &Ctx, arn: &str, attrs: &Attrs) -> ReadResult {
        let recorded = attrs.get("default_version_id").and_then(Value::as_str);
        read_policy(cx, arn, recorded.filter(|v| !v.is_empty())).await
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let (arn, r, changed) = (u.id, u.r, u.changed);
        let new_version = match changed.contains(&"policy") {
            true => Some(new_default_version(cx, arn, r).await?),
            false => None,
        };
        let policy = send!(cx.iam().get_policy().policy_arn(arn))?
            .policy
            .ok_or_else(|| ProviderError::unexpected("GetPolicy returned no policy"))?;
        let mut attrs = policy_attrs(arn, &policy);
        // GetPolicy may not show the new version yet (IAM is eventually consistent).
        if let Some(id) = new_version {
            attrs.insert("default_version_id".into(), id.into());
        }
        Ok(attrs)
    }

    async fn delete(&self, cx: &Ctx, arn: &str, _props: &Props) -> Result<(), ProviderError> {
        let listed = send!(cx.iam().list_policy_versions().policy_arn(arn));
        let Some(out) = absent(listed, NO_SUCH_ENTITY)? else {
            return Ok(());
        };
        let versions = out.versions.unwrap_or_default();
        for v in versions.into_iter().filter(|v| !v.is_default_version) {
            if let Some(id) = v.version_id {
                send!(cx
                    .iam()
                    .delete_policy_version()
                    .policy_arn(arn)
                    .version_id(id))?;
            }
        }
        let deleted = send!(cx.iam().delete_policy().policy_arn(arn));
        absent(deleted, NO_SUCH_ENTITY).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_reads_its_name_description_and_url_encoded_document() {
        let policy = aws_sdk_iam::types::Policy::builder()
            .policy_name("lambda_policy01")
            .description("Restart the instance")
            .build();
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            Value::Object(props_of(&policy, Some(encoded))),
            serde_json::json!({"name": "lambda_policy01", "description": "Restart the instance",
                               "policy": {"Version": "2012-10-17", "Statement": []}})
        );
        let bare = aws_sdk_iam::types::Policy::builder().build();
        assert_eq!(props_of(&bare, None)["description"], "");
    }
}

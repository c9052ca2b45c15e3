use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::id_parts;
use super::Typed;
use super::{
    absent, attrs, parse_json_text, retry_eventual, Attrs, Created, Ctx, Observed, Provider,
    ProviderError, ReadResult, Resource, Update,
};
use crate::schema::{
    Actions, ActsOn, Attr, Default, Names, Part, Prop, Props, Schema, Service, Type,
};

/// A statement in a function's resource policy: who may invoke it.
pub struct LambdaPermission;

static SCHEMA: Schema = Schema {
    type_name: "aws_lambda_permission",
    service: Service::Lambda,
    doc: "Lets a principal (a service such as lambda.alarms.cloudwatch.amazonaws.com) invoke a function. Its id is `<function>/<statement_id>`.",
    props: &[
        Prop::new("statement_id", Type::String, "Statement id, unique in the function's policy.")
            .required()
            .force_new()
            .check(|v| super::check_name(v, 100, "-_.", "statement ids use letters, digits and -_.")),
        Prop::new("action", Type::String, "The action allowed.").default(Default::Str("lambda:InvokeFunction")).force_new(),
        Prop::new("function_name", Type::String, "Function name or ARN.")
            .takes(&[("aws_lambda_function", Names::Name), ("aws_lambda_function", Names::Arn)])
            .required()
            .force_new(),
        Prop::new("principal", Type::String, "Who is allowed: a service principal or an account.").required().force_new(),
        Prop::new("source_arn", Type::String, "Only this resource (an alarm's ARN) may invoke.")
            .takes(&[("*", Names::Arn)])
            .force_new(),
        Prop::new("source_account", Type::String, "Only resources of this account may invoke.").force_new(),
    ],
    attrs: &[Attr::new("id", "`<function>/<statement_id>`.")],
    identity: &["function_name", "statement_id"],
    id_format: Some("{function_name}/{statement_id}"),
    names: &[],
    part: Part::Invocation,
    actions: Actions {
        read: &["lambda:GetPolicy"],
        create: &["lambda:AddPermission"],
        update: &[],
        delete: &["lambda:RemovePermission"],
        on: ActsOn::Parent("function_name", "aws_lambda_function"),
    },
    ..Schema::BASE
};

impl Typed for LambdaPermission {
    const SCHEMA: &'static Schema = &SCHEMA;
}

fn condition<'a>(st: &'a Value, op: &str, key: &str) -> Option<&'a Value> {
    let cond = st.get("Condition")?.get(op)?;
    cond.get(key).or_else(|| {
        cond.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

#[async_trait]
impl Provider for LambdaPermission {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let (function, sid) = (
            r.required_str("function_name")?,
            r.required_str("statement_id")?,
        );
        // The function may still be finishing an update: that is a conflict, not a refusal.
        retry_eventual(
            Duration::from_secs(60),
            |e| e.is("ResourceConflictException") && !e.message.contains("already exists"),
            || async {
                send!(cx
                    .lambda()
                    .add_permission()
                    .function_name(function)
                    .statement_id(sid)
                    .action(r.str("action").unwrap_or("lambda:InvokeFunction"))
                    .principal(r.required_str("principal")?)
                    .set_source_arn(r.str("source_arn").map(str::to_string))
                    .set_source_account(r.str("source_account").map(str::to_string)))
            },
        )
        .await?;
        let id = format!("{function}/{sid}");
        Ok(Created::new(
            id.clone(),
            attrs([("id", Value::from(id.clone()))]),
        ))
    }

    async fn read(&self, cx: &Ctx, id: &str) -> ReadResult {
        let (function, sid) = id_parts(&SCHEMA, id)?;
        let got = send!(cx.lambda().get_policy().function_name(function));
        let Some(out) = absent(got, &["ResourceNotFoundException"])? else {
            return Ok(None);
        };
        let policy = parse_json_text(&out.policy.unwrap_or_default());
        let statements = match policy.get("Statement") {
            Some(Value::Array(s)) => s.clone(),
            Some(s @ Value::Object(_)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let Some(st) = statements
            .into_iter()
            .find(|s| s.get("Sid").and_then(Value::as_str) == Some(sid))
        else {
            return Ok(None);
        };
        let props = props_of(function, sid, &st);
        Ok(Some(Observed {
            props,
            attrs: attrs([("id", Value::from(id))]),
            owner: None,
        }))
    }

    async fn update(&self, _: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let Update { id, .. } = *u;
        Ok(attrs([("id", Value::from(id))])) // every property forces a replacement
    }

    async fn delete(&self, cx: &Ctx, id: &str, _props: &Props) -> Result<(), ProviderError> {
        let (function, sid) = id_parts(&SCHEMA, id)?;
        let removed = send!(cx
            .lambda()
            .remove_permission()
            .function_name(function)
            .statement_id(sid));
        absent(removed, &["ResourceNotFoundException"]).map(|_| ())
    }
}

/// A statement of the function's policy as the stack file names it: the
/// principal a service or an account (its root ARN read back as the id).
fn props_of(function: &str, sid: &str, st: &Value) -> Props {
    let principal = match st.get("Principal") {
        Some(Value::String(p)) => p.clone(),
        Some(p) => p
            .get("Service")
            .or_else(|| p.get("AWS"))
            .and_then(Value::as_str)
            .map(|s| {
                s.trim_start_matches("arn:aws:iam::")
                    .trim_end_matches(":root")
                    .to_string()
            })
            .unwrap_or_default(),
        None => String::new(),
    };
    let mut props = Props::new();
    props.insert("statement_id".into(), Value::from(sid));
    props.insert(
        "action".into(),
        st.get("Action").cloned().unwrap_or(Value::Null),
    );
    props.insert("function_name".into(), Value::from(function));
    props.insert("principal".into(), Value::from(principal));
    if let Some(arn) = condition(st, "ArnLike", "AWS:SourceArn") {
        props.insert("source_arn".into(), arn.clone());
    }
    if let Some(account) = condition(st, "StringEquals", "AWS:SourceAccount") {
        props.insert("source_account".into(), account.clone());
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_statement_reads_back_as_the_permission_that_made_it() {
        let st = json!({
            "Sid": "AllowAlarm", "Effect": "Allow", "Action": "lambda:InvokeFunction",
            "Principal": {"Service": "lambda.alarms.cloudwatch.amazonaws.com"},
            "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:cloudwatch:us-east-2:123456789012:alarm:slow"},
                          "StringEquals": {"aws:sourceaccount": "123456789012"}},
        });
        assert_eq!(
            Value::Object(props_of("fix", "AllowAlarm", &st)),
            json!({"statement_id": "AllowAlarm", "action": "lambda:InvokeFunction",
                   "function_name": "fix", "principal": "lambda.alarms.cloudwatch.amazonaws.com",
                   "source_arn": "arn:aws:cloudwatch:us-east-2:123456789012:alarm:slow",
                   "source_account": "123456789012"})
        );
        let account = json!({"Sid": "A", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}});
        assert_eq!(
            props_of("fix", "A", &account)["principal"],
            json!("123456789012")
        );
    }
}

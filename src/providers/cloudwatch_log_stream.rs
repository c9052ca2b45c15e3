use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::types::LogStream as Stream;
use serde_json::Value;

use super::cloudwatch_log_group::check_log_group_name;
use super::id_parts;
use super::Typed;
use super::{
    absent, attrs, Attrs, Created, Ctx, Observed, Provider, ProviderError, ReadResult, Resource,
    Update,
};
use crate::schema::{
    fill_format, Actions, ActsOn, Attr, Names, Prop, Props, Schema, Service, Type,
};

pub struct LogStream;

fn check_stream_name(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s)
            if !s.is_empty()
                && s.chars().count() <= 512
                && !s.contains(':')
                && !s.contains('*') =>
        {
            Ok(())
        }
        _ => Err("must be 1 to 512 characters without `:` or `*`".into()),
    }
}

static SCHEMA: Schema = Schema {
    type_name: "aws_cloudwatch_log_stream",
    service: Service::Logs,
    doc: "A log stream in a log group. Its physical id (in `state list`, and what `import` takes) is `<log group>:<stream>`; its `id` attribute, as in Terraform, is the stream's name.",
    props: &[
        Prop::new("name", Type::String, "Stream name.")
            .required()
            .force_new()
            .check(check_stream_name),
        Prop::new("log_group_name", Type::String, "The log group.")
            .takes(&[("aws_cloudwatch_log_group", Names::Name)])
            .required()
            .force_new()
            .check(check_log_group_name),
    ],
    attrs: &[
        Attr::new("arn", "Stream ARN."),
        Attr::new("id", "Stream name."),
    ],
    identity: &["log_group_name", "name"],
    arn_format: Some(
        "arn:aws:logs:{region}:{account}:log-group:{log_group_name}:log-stream:{name}",
    ),
    id_format: Some("{log_group_name}:{name}"),
    names: &[
        ("arn", Names::Arn),
        ("name", Names::Name),
        ("id", Names::Name),
    ],
    actions: Actions {
        read: &["logs:DescribeLogStreams"],
        create: &["logs:CreateLogStream"],
        update: &[],
        delete: &["logs:DeleteLogStream"],
        on: ActsOn::Parent("log_group_name", "aws_cloudwatch_log_group"),
    },
    ..Schema::BASE
};

impl Typed for LogStream {
    const SCHEMA: &'static Schema = &SCHEMA;
}

async fn describe(cx: &Ctx, group: &str, stream: &str) -> Result<Option<Stream>, ProviderError> {
    let got = send!(cx
        .logs()
        .describe_log_streams()
        .log_group_name(group)
        .log_stream_name_prefix(stream));
    let Some(out) = absent(got, &["ResourceNotFoundException"])? else {
        return Ok(None);
    };
    Ok(out
        .log_streams
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.log_stream_name.as_deref() == Some(stream)))
}

/// The stream's attributes from DescribeLogStreams' answer; where the
/// answer has no ARN, the one the schema's `arn_format` makes.
fn stream_attrs(stream: &Stream, [region, account, group, name]: [&str; 4]) -> Attrs {
    let arn = stream.arn.clone().or_else(|| {
        fill_format(SCHEMA.arn_format?, |field| match field {
            "region" => Some(region.to_string()),
            "account" => Some(account.to_string()),
            "log_group_name" => Some(group.to_string()),
            "name" => Some(name.to_string()),
            _ => None,
        })
    });
    attrs([("arn", arn.unwrap_or_default().into()), ("id", name.into())])
}

/// The stream's attributes, asking STS for the account only where the
/// answer lacks the ARN.
async fn attrs_of(
    cx: &Ctx,
    stream: &Stream,
    group: &str,
    name: &str,
) -> Result<Attrs, ProviderError> {
    let account = match stream.arn {
        Some(_) => String::new(),
        None => cx.account_id().await?,
    };
    Ok(stream_attrs(stream, [&cx.region(), &account, group, name]))
}

#[async_trait]
impl Provider for LogStream {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let (group, name) = (r.required_str("log_group_name")?, r.required_str("name")?);
        send!(cx
            .logs()
            .create_log_stream()
            .log_group_name(group)
            .log_stream_name(name))?;
        let id = format!("{group}:{name}");
        let stream = describe(cx, group, name)
            .await
            .and_then(|s| {
                s.ok_or_else(|| ProviderError::unexpected("the new log stream cannot be read back"))
            })
            .map_err(|e| e.after_create(&id))?;
        let attrs = attrs_of(cx, &stream, group, name).await;
        Ok(Created::new(
            id.clone(),
            attrs.map_err(|e| e.after_create(&id))?,
        ))
    }

    async fn read(&self, cx: &Ctx, id: &str) -> ReadResult {
        let (group, name) = id_parts(&SCHEMA, id)?;
        let Some(stream) = describe(cx, group, name).await? else {
            return Ok(None);
        };
        let mut props = Props::new();
        props.insert("name".into(), Value::from(name));
        props.insert("log_group_name".into(), Value::from(group));
        Ok(Some(Observed {
            attrs: attrs_of(cx, &stream, group, name).await?,
            props,
            owner: None,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let Update { id, .. } = *u;
        Ok(self
            .read(cx, id)
            .await?
            .map(|o| o.attrs)
            .unwrap_or_default())
    }

    async fn delete(&self, cx: &Ctx, id: &str, _props: &Props) -> Result<(), ProviderError> {
        let (group, name) = id_parts(&SCHEMA, id)?;
        let deleted = send!(cx
            .logs()
            .delete_log_stream()
            .log_group_name(group)
            .log_stream_name(name));
        absent(deleted, &["ResourceNotFoundException"]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_reads_as_its_arn_and_name_and_an_answer_without_arn_gets_the_schemas() {
        let at = ["us-east-2", "123456789012", "/app/logs", "web-1"];
        let answered = Stream::builder().arn("arn:aws:logs:x").build();
        assert_eq!(
            Value::Object(stream_attrs(&answered, at)),
            serde_json::json!({"arn": "arn:aws:logs:x", "id": "web-1"})
        );
        let bare = Stream::builder().log_stream_name("web-1").build();
        assert_eq!(
            stream_attrs(&bare, at)["arn"],
            "arn:aws:logs:us-east-2:123456789012:log-group:/app/logs:log-stream:web-1"
        );
    }
}

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::Typed;
use super::{
    absent, attrs, aws, str_list, Attrs, Created, Ctx, Observed, Provider, ProviderError,
    ReadResult, Resource, Update,
};
use crate::schema::{
    Actions, ActsOn, Attr, Compare, Default, Names, Prop, Props, Schema, Service, Type,
};

/// A saved CloudWatch Logs Insights query.
pub struct QueryDefinition;

fn check_query(v: &Value) -> Result<(), String> {
    let q = v.as_str().unwrap_or_default();
    if q.trim().is_empty() || q.chars().count() > 10_000 {
        return Err("must be 1 to 10000 characters".into());
    }
    // A glob `parse` needs as many `*` as aliases; a mismatch is a compile error.
    for command in q.split('|').map(str::trim) {
        let Some(rest) = command.strip_prefix("parse ") else {
            continue;
        };
        let Some(open) = rest.find(['"', '\'']) else {
            continue;
        };
        let quote = rest[open..].chars().next().unwrap_or('"');
        let Some(len) = rest[open + 1..].find(quote) else {
            return Err(format!("has an unterminated string in `{command}`"));
        };
        let glob = &rest[open + 1..open + 1 + len];
        let aliases = rest[open + 2 + len..]
            .trim()
            .strip_prefix("as ")
            .map_or(0, |a| a.split(',').count());
        let stars = glob.matches('*').count();
        if stars != aliases {
            return Err(format!(
                "`{command}` has {stars} `*` but {aliases} names after `as`"
            ));
        }
    }
    Ok(())
}

static SCHEMA: Schema = Schema {
    type_name: "aws_cloudwatch_query_definition",
    service: Service::Logs,
    doc: "A saved Logs Insights query. Its id is the query definition id.",
    props: &[
        Prop::new(
            "name",
            Type::String,
            "Query name (may contain / for folders).",
        )
        .required()
        .check(|v| match v.as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= 255 => Ok(()),
            _ => Err("must be 1 to 255 characters".into()),
        }),
        Prop::new(
            "log_group_names",
            Type::List(&Type::String),
            "Log groups the query runs on.",
        )
        .default(Default::Json("[]"))
        .takes(&[("aws_cloudwatch_log_group", Names::Name)])
        .compare(Compare::Set),
        Prop::new("query_string", Type::String, "The query.")
            .required()
            .check(check_query),
    ],
    attrs: &[
        Attr::new("id", "Query definition id."),
        Attr::new("query_definition_id", "Query definition id."),
    ],
    identity: &["name"],
    names: &[("query_definition_id", Names::Id), ("id", Names::Id)],
    actions: Actions {
        read: &["logs:DescribeQueryDefinitions"],
        create: &["logs:PutQueryDefinition"],
        update: &["logs:PutQueryDefinition"],
        delete: &["logs:DeleteQueryDefinition"],
        on: ActsOn::Itself,
    },
    ..Schema::BASE
};

impl Typed for QueryDefinition {
    const SCHEMA: &'static Schema = &SCHEMA;
}

async fn put(cx: &Ctx, r: &Resource<'_>, id: Option<&str>) -> Result<String, ProviderError> {
    let out = cx
        .logs()
        .put_query_definition()
        .name(r.required_str("name")?)
        .query_string(r.required_str("query_string")?)
        .set_log_group_names(Some(str_list(r.props.get("log_group_names"))))
        .set_query_definition_id(id.map(str::to_string))
        // Only a create carries the token: a repeat, even from a run after a
        // crash, returns the definition the first call made.
        .set_client_token(
            id.is_none()
                .then(|| r.token.to_string())
                .filter(|t| !t.is_empty()),
        )
        .send()
        .await
        .map_err(aws)?;
    out.query_definition_id
        .ok_or_else(|| ProviderError::unexpected("PutQueryDefinition returned no id"))
}

fn qd_attrs(id: &str) -> Map<String, Value> {
    attrs([
        ("id", Value::from(id)),
        ("query_definition_id", Value::from(id)),
    ])
}

async fn list(
    cx: &Ctx,
    prefix: &str,
) -> Result<Vec<aws_sdk_cloudwatchlogs::types::QueryDefinition>, ProviderError> {
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let out = send!(cx
            .logs()
            .describe_query_definitions()
            .query_definition_name_prefix(prefix)
            .set_next_token(token))?;
        all.extend(out.query_definitions.unwrap_or_default());
        token = out.next_token;
        if token.is_none() {
            return Ok(all);
        }
    }
}

#[async_trait]
impl Provider for QueryDefinition {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let id = put(cx, r, None).await?;
        Ok(Created::new(id.clone(), qd_attrs(&id)))
    }

    async fn read(&self, cx: &Ctx, id: &str) -> ReadResult {
        // DescribeQueryDefinitions filters by name only: list and pick the id.
        let found = list(cx, "")
            .await?
            .into_iter()
            .find(|q| q.query_definition_id.as_deref() == Some(id));
        let Some(q) = found else { return Ok(None) };
        Ok(Some(Observed {
            props: props_of(&q),
            attrs: qd_attrs(id),
            owner: None,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let Update { id, r, .. } = *u;
        put(cx, r, Some(id)).await?;
        Ok(qd_attrs(id))
    }

    async fn delete(&self, cx: &Ctx, id: &str, _props: &Props) -> Result<(), ProviderError> {
        let deleted = send!(cx.logs().delete_query_definition().query_definition_id(id));
        absent(deleted, &["ResourceNotFoundException"]).map(|_| ())
    }

    async fn find(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Option<String>, ProviderError> {
        // Query definitions are known by name in the console and the API.
        let name = r.required_str("name")?;
        Ok(list(cx, name)
            .await?
            .into_iter()
            .find(|q| q.name.as_deref() == Some(name))
            .and_then(|q| q.query_definition_id))
    }
}

/// DescribeQueryDefinitions' definition as the stack file names it.
fn props_of(q: &aws_sdk_cloudwatchlogs::types::QueryDefinition) -> Props {
    let groups = q.log_group_names().iter().map(|g| Value::from(g.as_str()));
    let mut props = Props::new();
    props.insert("name".into(), Value::from(q.name().unwrap_or_default()));
    props.insert("log_group_names".into(), Value::Array(groups.collect()));
    let query = q.query_string().unwrap_or_default();
    props.insert("query_string".into(), Value::from(query));
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_definition_reads_its_name_groups_and_query() {
        let q = aws_sdk_cloudwatchlogs::types::QueryDefinition::builder()
            .name("ResponseTime")
            .query_definition_id("450c605b")
            .log_group_names("myloggroup")
            .query_string("fields @message")
            .build();
        assert_eq!(
            Value::Object(props_of(&q)),
            serde_json::json!({"name": "ResponseTime", "log_group_names": ["myloggroup"], "query_string": "fields @message"})
        );
        let bare = aws_sdk_cloudwatchlogs::types::QueryDefinition::builder().build();
        assert_eq!(props_of(&bare)["log_group_names"], serde_json::json!([]));
    }

    #[test]
    fn parse_globs_need_one_name_per_star() {
        assert!(check_query(&Value::from(
            "fields @message | parse @message \"time for *: * ms\" as endpoint, rt"
        ))
        .is_ok());
        let err = check_query(&Value::from(
            "parse @message 'for /api/data: * (\\\\d+) ms' as a, b",
        ))
        .unwrap_err();
        assert_contains!(err, "has 1 `*` but 2 names");
        assert!(check_query(&Value::from("")).is_err());
    }
}

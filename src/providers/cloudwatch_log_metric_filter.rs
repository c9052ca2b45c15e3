use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::types::{MetricTransformation, StandardUnit};
use serde_json::{Map, Value};

use super::cloudwatch_log_group::check_log_group_name;
use super::id_parts;
use super::Typed;
use super::{
    absent, attrs, check_one_of, Attrs, Created, Ctx, Observed, Provider, ProviderError,
    ReadResult, Resource, Update,
};
use crate::schema::{Actions, ActsOn, Attr, Names, Part, Prop, Props, Schema, Service, Type};

pub struct MetricFilter;

fn check_pattern(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    if s.chars().count() > 1024 {
        return Err("must be at most 1024 characters".into());
    }
    // In `%regex%` terms AWS rejects groups.
    let mut in_regex = false;
    for c in s.chars() {
        match c {
            '%' => in_regex = !in_regex,
            '(' | ')' if in_regex => {
                return Err(
                    "uses parentheses inside `%regex%`, which metric filter patterns do not allow"
                        .into(),
                )
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_metric_name(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if !s.is_empty() && s.chars().count() <= 255 && !s.contains([':', '*', '$']) => {
            Ok(())
        }
        _ => Err("must be 1 to 255 characters without `:`, `*` or `$`".into()),
    }
}

const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

static TRANSFORMATION: &[Prop] = &[
    Prop::new("name", Type::String, "Metric name.")
        .required()
        .check(check_metric_name),
    Prop::new("namespace", Type::String, "Metric namespace.")
        .required()
        .check(check_metric_name),
    Prop::new(
        "value",
        Type::String,
        "What to publish per matching event: a number, or `$field`.",
    )
    .required(),
    Prop::new(
        "default_value",
        Type::Float,
        "Published when events arrive but none match.",
    ),
    Prop::new("unit", Type::String, "Unit of the metric.").check(|v| check_one_of(v, UNITS)),
];

static SCHEMA: Schema = Schema {
    type_name: "aws_cloudwatch_log_metric_filter",
    service: Service::Logs,
    doc: "Turns matching log events into a metric. Its physical id (in `state list`, and what `import` takes) is `<log group>:<name>`; its `id` attribute (`${mf.id}`), as in Terraform, is the filter's name.",
    props: &[
        Prop::new("name", Type::String, "Filter name.")
            .required()
            .force_new()
            .check(|v| match v.as_str() {
                Some(s) if !s.is_empty() && s.chars().count() <= 512 && !s.contains([':', '*']) => {
                    Ok(())
                }
                _ => Err("must be 1 to 512 characters without `:` or `*`".into()),
            }),
        Prop::new("log_group_name", Type::String, "The log group.")
            .takes(&[("aws_cloudwatch_log_group", Names::Name)])
            .required()
            .force_new()
            .check(check_log_group_name),
        Prop::new("pattern", Type::String, "Filter pattern.")
            .required()
            .check(check_pattern),
        Prop::new(
            "metric_transformation",
            Type::Object(TRANSFORMATION),
            "The metric published.",
        )
        .required(),
    ],
    attrs: &[Attr::new("id", "Filter name.")],
    identity: &["log_group_name", "name"],
    id_format: Some("{log_group_name}:{name}"),
    names: &[("name", Names::Name), ("id", Names::Name)],
    part: Part::MetricFilter,
    actions: Actions {
        read: &["logs:DescribeMetricFilters"],
        create: &["logs:PutMetricFilter"],
        update: &["logs:PutMetricFilter"],
        delete: &["logs:DeleteMetricFilter"],
        on: ActsOn::Parent("log_group_name", "aws_cloudwatch_log_group"),
    },
    ..Schema::BASE
};

impl Typed for MetricFilter {
    const SCHEMA: &'static Schema = &SCHEMA;
}

fn transformation(v: Option<&Value>) -> Result<MetricTransformation, ProviderError> {
    let t = v
        .and_then(Value::as_object)
        .ok_or_else(|| ProviderError::refused("metric_transformation is missing"))?;
    let s = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_string);
    MetricTransformation::builder()
        .set_metric_name(s("name"))
        .set_metric_namespace(s("namespace"))
        .set_metric_value(s("value"))
        .set_default_value(t.get("default_value").and_then(Value::as_f64))
        .set_unit(s("unit").map(|u| StandardUnit::from(u.as_str())))
        .build()
        .map_err(|e| ProviderError::refused(e.to_string()))
}

async fn put(cx: &Ctx, r: &Resource<'_>) -> Result<(String, String), ProviderError> {
    let (group, name) = (r.required_str("log_group_name")?, r.required_str("name")?);
    send!(cx
        .logs()
        .put_metric_filter()
        .log_group_name(group)
        .filter_name(name)
        .filter_pattern(r.str("pattern").unwrap_or_default())
        .metric_transformations(transformation(r.props.get("metric_transformation"))?))?;
    Ok((group.to_string(), name.to_string()))
}

#[async_trait]
impl Provider for MetricFilter {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let (group, name) = put(cx, r).await?;
        Ok(Created::new(
            format!("{group}:{name}"),
            attrs([("id", Value::from(name.clone()))]),
        ))
    }

    async fn read(&self, cx: &Ctx, id: &str) -> ReadResult {
        let (group, name) = id_parts(&SCHEMA, id)?;
        let got = send!(cx
            .logs()
            .describe_metric_filters()
            .log_group_name(group)
            .filter_name_prefix(name));
        let Some(out) = absent(got, &["ResourceNotFoundException"])? else {
            return Ok(None);
        };
        let Some(f) = out
            .metric_filters
            .unwrap_or_default()
            .into_iter()
            .find(|f| f.filter_name.as_deref() == Some(name))
        else {
            return Ok(None);
        };
        let props = props_of(group, f);
        Ok(Some(Observed {
            props,
            attrs: attrs([("id", Value::from(name))]),
            owner: None,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let Update { r, .. } = *u;
        // PutMetricFilter with the same name replaces the filter's definition.
        let (_, name) = put(cx, r).await?;
        Ok(attrs([("id", Value::from(name))]))
    }

    async fn delete(&self, cx: &Ctx, id: &str, _props: &Props) -> Result<(), ProviderError> {
        let (group, name) = id_parts(&SCHEMA, id)?;
        let deleted = send!(cx
            .logs()
            .delete_metric_filter()
            .log_group_name(group)
            .filter_name(name));
        absent(deleted, &["ResourceNotFoundException"]).map(|_| ())
    }
}

/// A filter of DescribeMetricFilters' answer as the stack file names it:
/// its first transformation, an unset unit ("None") left out.
fn props_of(group: &str, f: aws_sdk_cloudwatchlogs::types::MetricFilter) -> Props {
    let mut props = Props::new();
    props.insert(
        "name".into(),
        Value::from(f.filter_name.unwrap_or_default()),
    );
    props.insert("log_group_name".into(), Value::from(group));
    props.insert(
        "pattern".into(),
        Value::from(f.filter_pattern.unwrap_or_default()),
    );
    let transformations = f.metric_transformations.unwrap_or_default();
    if let Some(t) = transformations.into_iter().next() {
        let mut m = Map::new();
        m.insert("name".into(), Value::from(t.metric_name));
        m.insert("namespace".into(), Value::from(t.metric_namespace));
        m.insert("value".into(), Value::from(t.metric_value));
        if let Some(d) = t.default_value {
            m.insert("default_value".into(), Value::from(d));
        }
        // AWS reports an unset unit as None.
        if let Some(u) = t.unit.filter(|u| u.as_str() != "None") {
            m.insert("unit".into(), Value::from(u.as_str()));
        }
        props.insert("metric_transformation".into(), Value::Object(m));
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_filters_first_transformation_reads_without_an_unset_unit() {
        use aws_sdk_cloudwatchlogs::types::{MetricFilter, MetricTransformation, StandardUnit};
        let t = MetricTransformation::builder()
            .metric_name("SlowResponses")
            .metric_namespace("MyApp")
            .metric_value("1")
            .unit(StandardUnit::None)
            .build()
            .unwrap();
        let f = MetricFilter::builder()
            .filter_name("slow")
            .filter_pattern("\"High response time\"")
            .metric_transformations(t)
            .build();
        assert_eq!(
            Value::Object(props_of("app", f)),
            json!({"name": "slow", "log_group_name": "app", "pattern": "\"High response time\"",
                   "metric_transformation": {"name": "SlowResponses", "namespace": "MyApp", "value": "1"}})
        );
    }
}

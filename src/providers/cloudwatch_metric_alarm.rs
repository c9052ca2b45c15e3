use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
use serde_json::{Map, Value};

use super::Typed;
use super::{
    absent, attrs, check_one_of, exactly_one, observed_by_name, split_tags, str_list, string_map,
    tagging, tags_of_each, tags_or, user_tags, with_tags, Attrs, BatchResult, Created, Ctx,
    Observed, Provider, ProviderError, ReadResult, Resource, Update,
};
use crate::schema::{
    Actions, ActsOn, Attr, Compare, Default, Names, Part, Prop, Props, Schema, Service, Tagging,
    Type,
};

pub struct MetricAlarm;

const STATISTICS: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum"];
const OPERATORS: &[&str] = &[
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
    "LessThanLowerOrGreaterThanUpperThreshold",
    "LessThanLowerThreshold",
    "GreaterThanUpperThreshold",
];
const MISSING_DATA: &[&str] = &["breaching", "notBreaching", "ignore", "missing"];

fn check_alarm_name(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s)
            if !s.is_empty() && s.chars().count() <= 255 && !s.chars().any(char::is_control) =>
        {
            Ok(())
        }
        _ => Err("must be 1 to 255 characters without control characters".into()),
    }
}

fn check_period(v: &Value) -> Result<(), String> {
    match v.as_i64() {
        Some(10 | 20 | 30) => Ok(()),
        Some(p) if p >= 60 && p % 60 == 0 => Ok(()),
        _ => Err("must be 10, 20, 30 or a multiple of 60 seconds".into()),
    }
}

fn check_actions(v: &Value) -> Result<(), String> {
    let actions = str_list(Some(v));
    if actions.len() > 5 {
        return Err("may list at most 5 actions".into());
    }
    match actions
        .iter()
        .find(|a| !a.starts_with("arn:") || a.len() > 1024)
    {
        Some(bad) => Err(format!("`{bad}` is not an action ARN")),
        None => Ok(()),
    }
}

/// AWS's rules that span properties (PutMetricAlarm answers ValidationError).
fn cross_check(p: &Props) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    let int = |k: &str| p.get(k).and_then(Value::as_i64);
    let (period, evaluation, datapoints) = (
        int("period"),
        int("evaluation_periods"),
        int("datapoints_to_alarm"),
    );
    if let (Some(m), Some(n)) = (datapoints, evaluation) {
        if m > n {
            errors.push((
                "datapoints_to_alarm",
                format!("DatapointsToAlarm must be less than or equal to EvaluationPeriods ({m} > {n}): alarm on {m} of the last {n} periods is impossible"),
            ));
        }
    }
    if let (Some(p), Some(n)) = (period, evaluation) {
        let limit = if p < 3600 { 86_400 } else { 604_800 };
        if p * n > limit {
            errors.push((
                "evaluation_periods",
                format!("period × evaluation_periods is {} s; AWS allows at most {limit} s for a {p} s period", p * n),
            ));
        }
    }
    if let Some(n) = evaluation {
        if n < 1 {
            errors.push(("evaluation_periods", "must be at least 1".into()));
        }
    }
    if let Some(m) = datapoints {
        if m < 1 {
            errors.push(("datapoints_to_alarm", "must be at least 1".into()));
        }
    }
    errors.extend(exactly_one(
        p,
        ["statistic", "extended_statistic"],
        "set either `statistic` or `extended_statistic`, not both",
        "set `statistic` (or `extended_statistic` for a percentile)",
    ));
    errors
}

/// A list of ARNs notified on one state, in any order.
const fn actions(name: &'static str, doc: &'static str) -> Prop {
    Prop::new(name, Type::List(&Type::String), doc)
        .default(Default::Json("[]"))
        .takes(&[("*", Names::Arn)])
        .compare(Compare::Set)
        .check(check_actions)
}

static SCHEMA: Schema = Schema {
    type_name: "aws_cloudwatch_metric_alarm",
    service: Service::CloudWatch,
    doc: "A CloudWatch alarm on one metric. Its id is the alarm name.",
    props: &[
        Prop::new("alarm_name", Type::String, "Alarm name.")
            .required()
            .force_new()
            .check(check_alarm_name),
        Prop::new("alarm_description", Type::String, "Description.")
            .default(Default::Str(""))
            .check(|v| {
                if v.as_str().is_some_and(|s| s.chars().count() <= 1024) {
                    Ok(())
                } else {
                    Err("must be at most 1024 characters".into())
                }
            }),
        Prop::new("namespace", Type::String, "Metric namespace.").required(),
        Prop::new("metric_name", Type::String, "Metric name.").required(),
        Prop::new(
            "statistic",
            Type::String,
            "SampleCount, Average, Sum, Minimum or Maximum.",
        )
        .default(Default::Unset)
        .check(|v| check_one_of(v, STATISTICS)),
        Prop::new(
            "extended_statistic",
            Type::String,
            "A percentile such as p99 (instead of statistic).",
        )
        .default(Default::Unset),
        Prop::new(
            "period",
            Type::Int,
            "Seconds per datapoint: 10, 20, 30 or a multiple of 60.",
        )
        .required()
        .check(check_period),
        Prop::new(
            "evaluation_periods",
            Type::Int,
            "How many recent periods are evaluated.",
        )
        .required(),
        Prop::new(
            "datapoints_to_alarm",
            Type::Int,
            "How many of them must breach (left out: all).",
        )
        .default(Default::Unset),
        Prop::new("threshold", Type::Float, "The value compared against.").required(),
        Prop::new(
            "comparison_operator",
            Type::String,
            "How the statistic is compared with the threshold.",
        )
        .required()
        .check(|v| check_one_of(v, OPERATORS)),
        Prop::new(
            "treat_missing_data",
            Type::String,
            "breaching, notBreaching, ignore or missing.",
        )
        .default(Default::Str("missing"))
        .check(|v| check_one_of(v, MISSING_DATA)),
        Prop::new("dimensions", Type::StringMap, "Metric dimensions.").default(Default::EmptyMap),
        actions("alarm_actions", "ARNs notified on ALARM."),
        actions("ok_actions", "ARNs notified on OK."),
        actions(
            "insufficient_data_actions",
            "ARNs notified on INSUFFICIENT_DATA.",
        ),
        Prop::new("actions_enabled", Type::Bool, "Whether actions run.")
            .default(Default::Bool(true)),
        Prop::tags(),
    ],
    attrs: &[
        Attr::new("arn", "Alarm ARN."),
        Attr::new("id", "Alarm name."),
    ],
    tagging: Tagging::CloudWatch,
    identity: &["alarm_name"],
    arn_format: Some("arn:aws:cloudwatch:{region}:{account}:alarm:{alarm_name}"),
    cross_check: Some(cross_check),
    id_format: Some("{alarm_name}"),
    batch_read: true,
    names: &[
        ("arn", Names::Arn),
        ("alarm_name", Names::Name),
        ("id", Names::Name),
    ],
    part: Part::Alarm,
    actions: Actions {
        read: &["cloudwatch:DescribeAlarms"],
        create: &["cloudwatch:PutMetricAlarm"],
        update: &["cloudwatch:PutMetricAlarm"],
        delete: &["cloudwatch:DeleteAlarms"],
        on: ActsOn::Itself,
    },
    ..Schema::BASE
};

impl Typed for MetricAlarm {
    const SCHEMA: &'static Schema = &SCHEMA;
}

fn alarm_attrs(arn: &str, name: &str) -> Map<String, Value> {
    attrs([("arn", arn.into()), ("id", name.into())])
}

/// PutMetricAlarm creates and updates alike: it replaces the whole configuration.
async fn put(
    cx: &Ctx,
    r: &Resource<'_>,
    tags: Option<Vec<(String, String)>>,
) -> Result<(), ProviderError> {
    let mut req = cx
        .cloudwatch()
        .put_metric_alarm()
        .alarm_name(r.required_str("alarm_name")?)
        .namespace(r.required_str("namespace")?)
        .metric_name(r.required_str("metric_name")?)
        .period(r.i64("period").unwrap_or(60) as i32)
        .evaluation_periods(r.i64("evaluation_periods").unwrap_or(1) as i32)
        .set_datapoints_to_alarm(r.i64("datapoints_to_alarm").map(|n| n as i32))
        .threshold(
            r.props
                .get("threshold")
                .and_then(Value::as_f64)
                .unwrap_or_default(),
        )
        .comparison_operator(ComparisonOperator::from(
            r.required_str("comparison_operator")?,
        ))
        .treat_missing_data(r.str("treat_missing_data").unwrap_or("missing"))
        .actions_enabled(r.bool("actions_enabled").unwrap_or(true))
        .set_alarm_actions(Some(str_list(r.props.get("alarm_actions"))))
        .set_ok_actions(Some(str_list(r.props.get("ok_actions"))))
        .set_insufficient_data_actions(Some(str_list(r.props.get("insufficient_data_actions"))))
        .set_dimensions(Some(
            string_map(r.props.get("dimensions"))
                .into_iter()
                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                .collect(),
        ))
        .set_statistic(r.str("statistic").map(Statistic::from))
        .set_extended_statistic(r.str("extended_statistic").map(str::to_string));
    if let Some(d) = r.str("alarm_description").filter(|d| !d.is_empty()) {
        req = req.alarm_description(d);
    }
    if let Some(tags) = tags {
        req = req.set_tags(Some(tagging::cloudwatch(tags)));
    }
    send!(req)?;
    Ok(())
}

async fn describe(
    cx: &Ctx,
    name: &str,
) -> Result<Option<aws_sdk_cloudwatch::types::MetricAlarm>, ProviderError> {
    let out = send!(cx.cloudwatch().describe_alarms().alarm_names(name))?;
    Ok(out
        .metric_alarms
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.alarm_name.as_deref() == Some(name)))
}

/// An alarm as the stack file describes it, with its tags if read.
async fn observe(
    cx: &Ctx,
    a: aws_sdk_cloudwatch::types::MetricAlarm,
    tags: Option<Vec<(String, String)>>,
) -> Result<Observed, ProviderError> {
    let name = a.alarm_name.clone().unwrap_or_default();
    let arn = a.alarm_arn.clone().unwrap_or_default();
    let tags = match tags {
        Some(tags) => tags,
        None => tags_or(cx, &arn, tagging::list(SCHEMA.tagging, cx, &arn)).await?,
    };
    let mut props = props_of(a);
    let (tags, owner) = split_tags(tags);
    props.insert("tags".into(), tags);
    Ok(Observed {
        props,
        attrs: alarm_attrs(&arn, &name),
        owner,
    })
}

/// DescribeAlarms' answer as the stack file names it (tags aside): what
/// AWS leaves out is its default.
fn props_of(a: aws_sdk_cloudwatch::types::MetricAlarm) -> Props {
    let text = |v: Option<String>| Value::from(v.unwrap_or_default());
    let list = |v: Option<Vec<String>>| Value::from(v.unwrap_or_default());
    let dimensions = a.dimensions.unwrap_or_default().into_iter();
    let dimensions = dimensions.map(|d| (d.name.unwrap_or_default(), d.value.unwrap_or_default()));
    let treat_missing_data = a.treat_missing_data.unwrap_or_else(|| "missing".into());
    let mut p: Props = [
        ("alarm_name", text(a.alarm_name)),
        ("alarm_description", text(a.alarm_description)),
        ("namespace", text(a.namespace)),
        ("metric_name", text(a.metric_name)),
        ("period", Value::from(a.period.unwrap_or_default())),
        (
            "evaluation_periods",
            Value::from(a.evaluation_periods.unwrap_or_default()),
        ),
        ("threshold", Value::from(a.threshold.unwrap_or_default())),
        ("treat_missing_data", Value::from(treat_missing_data)),
        ("dimensions", user_tags(dimensions)),
        ("alarm_actions", list(a.alarm_actions)),
        ("ok_actions", list(a.ok_actions)),
        (
            "insufficient_data_actions",
            list(a.insufficient_data_actions),
        ),
        (
            "actions_enabled",
            Value::from(a.actions_enabled.unwrap_or(true)),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let optional = [
        ("statistic", a.statistic.map(|s| Value::from(s.as_str()))),
        ("extended_statistic", a.extended_statistic.map(Value::from)),
        (
            "datapoints_to_alarm",
            a.datapoints_to_alarm.map(Value::from),
        ),
        (
            "comparison_operator",
            a.comparison_operator.map(|o| Value::from(o.as_str())),
        ),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            p.insert(k.to_string(), v);
        }
    }
    p
}

fn alarm_arn(cx: &Ctx, account: &str, name: &str) -> String {
    format!(
        "arn:{}:cloudwatch:{}:{account}:alarm:{name}",
        cx.partition(),
        cx.region()
    )
}

#[async_trait]
impl Provider for MetricAlarm {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let name = r.required_str("alarm_name")?;
        put(cx, r, Some(r.tags_with_ownership(cx))).await?;
        let alarm = describe(cx, name)
            .await
            .and_then(|a| {
                a.ok_or_else(|| ProviderError::unexpected("the new alarm cannot be read back"))
            })
            .map_err(|e| e.after_create(name))?;
        Ok(Created::new(
            name.to_string(),
            alarm_attrs(alarm.alarm_arn.as_deref().unwrap_or_default(), name),
        ))
    }

    async fn read(&self, cx: &Ctx, name: &str) -> ReadResult {
        let arn = alarm_arn(cx, &cx.account_id().await?, name);
        let (alarm, tags) = with_tags(
            cx,
            &arn,
            describe(cx, name),
            tagging::list(SCHEMA.tagging, cx, &arn),
        )
        .await?;
        match alarm {
            Some(a) => Ok(Some(observe(cx, a, Some(tags)).await?)),
            None => Ok(None),
        }
    }

    /// One describe call: the look before a create reads no tags.
    async fn exists(&self, cx: &Ctx, name: &str) -> Result<Option<bool>, ProviderError> {
        Ok(Some(describe(cx, name).await?.is_some()))
    }

    /// Alarms by name, 100 per DescribeAlarms call, the calls in parallel. Without
    /// tags from the bulk read, each alarm's tag call goes out beside them (its
    /// ARN follows from the name), not after.
    async fn read_many(&self, cx: &Ctx, names: &[String]) -> BatchResult {
        let calls = names.chunks(100).map(|chunk| async move {
            let out = send!(cx
                .cloudwatch()
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .max_records(100))?;
            Ok::<_, ProviderError>(out.metric_alarms.unwrap_or_default())
        });
        let tags = async {
            let account = cx.account_id().await?;
            let arns = names.iter().map(|n| alarm_arn(cx, &account, n)).collect();
            tags_of_each(cx, arns, |arn| async move {
                tagging::list(SCHEMA.tagging, cx, &arn).await
            })
            .await
        };
        let (alarms, mut tags) = tokio::try_join!(futures::future::try_join_all(calls), tags)?;
        let observing = alarms.into_iter().flatten().map(|a| {
            let tags = tags.remove(a.alarm_arn.as_deref().unwrap_or_default());
            observe(cx, a, tags)
        });
        observed_by_name(names, "alarm_name", observing).await
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let (name, r, changed) = (u.id, u.r, u.changed);
        let arn = describe(cx, name)
            .await?
            .and_then(|a| a.alarm_arn)
            .unwrap_or_default();
        if !changed.is_empty() {
            put(cx, r, None).await?;
        }
        Ok(alarm_attrs(&arn, name))
    }

    async fn delete(&self, cx: &Ctx, name: &str, _props: &Props) -> Result<(), ProviderError> {
        let deleted = send!(cx.cloudwatch().delete_alarms().alarm_names(name));
        absent(deleted, &["ResourceNotFound"]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::props;
    use serde_json::json;

    #[test]
    fn the_tutorials_five_of_one_alarm_is_rejected() {
        let errors = cross_check(&props(
            json!({"statistic": "Sum", "period": 600, "evaluation_periods": 1, "datapoints_to_alarm": 5}),
        ));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "datapoints_to_alarm");
        assert!(errors[0].1.starts_with(
            "DatapointsToAlarm must be less than or equal to EvaluationPeriods (5 > 1)"
        ));
    }

    #[test]
    fn period_times_evaluations_is_bounded() {
        let errors = cross_check(&props(
            json!({"statistic": "Sum", "period": 600, "evaluation_periods": 145}),
        ));
        assert_eq!(errors[0].0, "evaluation_periods");
        assert!(errors[0].1.contains("at most 86400 s"), "{}", errors[0].1);
        assert!(cross_check(&props(
            json!({"statistic": "Sum", "period": 3600, "evaluation_periods": 168})
        ))
        .is_empty());
    }

    #[test]
    fn statistic_xor_extended_statistic() {
        let both = cross_check(&props(
            json!({"statistic": "Sum", "extended_statistic": "p99", "period": 60, "evaluation_periods": 1}),
        ));
        assert!(both[0].1.contains("not both"));
        let neither = cross_check(&props(json!({"period": 60, "evaluation_periods": 1})));
        assert_eq!(neither[0].0, "statistic");
    }

    #[test]
    fn value_rules() {
        assert!(check_period(&json!(600)).is_ok());
        assert!(check_period(&json!(30)).is_ok());
        assert_eq!(
            check_period(&json!(90)).unwrap_err(),
            "must be 10, 20, 30 or a multiple of 60 seconds"
        );
        assert!(check_one_of(&json!("GreaterThanThreshold"), OPERATORS).is_ok());
        assert!(check_one_of(&json!("Above"), OPERATORS)
            .unwrap_err()
            .starts_with("must be one of GreaterThanOrEqualToThreshold"));
        assert!(check_one_of(&json!("notBreaching"), MISSING_DATA).is_ok());
        assert!(check_one_of(&json!("zero"), MISSING_DATA).is_err());
        assert!(check_actions(&json!(["not-an-arn"])).is_err());
    }

    #[test]
    fn describe_alarms_answer_reads_as_the_stack_file_names_it() {
        use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic};
        let alarm = MetricAlarm::builder()
            .alarm_name("slow")
            .namespace("App")
            .metric_name("Slow")
            .statistic(Statistic::Sum)
            .period(60)
            .evaluation_periods(2)
            .threshold(3.0)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
            .dimensions(Dimension::builder().name("Host").value("web-1").build())
            .alarm_actions("arn:aws:lambda:us-east-2:123456789012:function:fix")
            .build();
        let p = props_of(alarm);
        assert_eq!(
            Value::Object(p),
            json!({
                "alarm_name": "slow", "alarm_description": "", "namespace": "App",
                "metric_name": "Slow", "statistic": "Sum", "period": 60,
                "evaluation_periods": 2, "threshold": 3.0,
                "comparison_operator": "GreaterThanOrEqualToThreshold",
                "treat_missing_data": "missing", "dimensions": {"Host": "web-1"},
                "alarm_actions": ["arn:aws:lambda:us-east-2:123456789012:function:fix"],
                "ok_actions": [], "insufficient_data_actions": [], "actions_enabled": true,
            })
        );
    }
}

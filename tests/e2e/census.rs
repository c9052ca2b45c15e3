//! Counts, through the SDK, every object of the seed stack by its name or its
//! ownership tags: the measure of "exactly one of each, nothing left over".

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use crate::support::Env;

/// How many of each kind of object of the seed stack exist.
pub type Census = BTreeMap<&'static str, usize>;

/// What a converged seed stack has: one of everything, two policies on the role.
pub fn converged() -> Census {
    let mut c = nothing();
    for v in c.values_mut() {
        *v = 1;
    }
    c.insert("role policy attachments", 2);
    c
}

pub fn nothing() -> Census {
    [
        "log groups",
        "log streams",
        "query definitions",
        "metric filters",
        "alarms",
        "topics",
        "queues",
        "queue policies",
        "subscriptions",
        "roles",
        "policies",
        "role policy attachments",
        "functions",
        "permission statements",
        "security groups",
        "instances",
    ]
    .into_iter()
    .map(|k| (k, 0))
    .collect()
}

pub fn count(env: &Env) -> Census {
    let rt = &env.rt;
    let mut c = Census::new();
    let logs = env.logs();
    let groups = rt
        .block_on(
            logs.describe_log_groups()
                .log_group_name_prefix("myloggroup")
                .send(),
        )
        .unwrap()
        .log_groups
        .unwrap_or_default();
    let group_exists = groups
        .iter()
        .any(|g| g.log_group_name.as_deref() == Some("myloggroup"));
    c.insert("log groups", usize::from(group_exists));
    let streams = if group_exists {
        rt.block_on(
            logs.describe_log_streams()
                .log_group_name("myloggroup")
                .log_stream_name_prefix("mystream")
                .send(),
        )
        .unwrap()
        .log_streams
        .unwrap_or_default()
        .iter()
        .filter(|s| s.log_stream_name.as_deref() == Some("mystream"))
        .count()
    } else {
        0
    };
    c.insert("log streams", streams);
    let queries = rt
        .block_on(
            logs.describe_query_definitions()
                .query_definition_name_prefix("ResponseTime")
                .send(),
        )
        .unwrap()
        .query_definitions
        .unwrap_or_default();
    c.insert(
        "query definitions",
        queries
            .iter()
            .filter(|q| q.name.as_deref() == Some("ResponseTime"))
            .count(),
    );
    let filters = if group_exists {
        rt.block_on(
            logs.describe_metric_filters()
                .log_group_name("myloggroup")
                .send(),
        )
        .unwrap()
        .metric_filters
        .unwrap_or_default()
        .iter()
        .filter(|f| f.filter_name.as_deref() == Some("SlowResponses"))
        .count()
    } else {
        0
    };
    c.insert("metric filters", filters);
    let alarms = rt
        .block_on(
            env.cloudwatch()
                .describe_alarms()
                .alarm_names("slow-responses")
                .send(),
        )
        .unwrap()
        .metric_alarms
        .unwrap_or_default();
    c.insert("alarms", alarms.len());

    let topics = rt
        .block_on(env.sns().list_topics().send())
        .unwrap()
        .topics
        .unwrap_or_default();
    c.insert(
        "topics",
        topics
            .iter()
            .filter(|t| {
                t.topic_arn
                    .as_deref()
                    .is_some_and(|a| a.ends_with(":lambda_topic01"))
            })
            .count(),
    );
    let subs = rt
        .block_on(env.sns().list_subscriptions().send())
        .unwrap()
        .subscriptions
        .unwrap_or_default();
    c.insert(
        "subscriptions",
        subs.iter()
            .filter(|s| {
                s.topic_arn
                    .as_deref()
                    .is_some_and(|a| a.ends_with(":lambda_topic01"))
                    && s.protocol.as_deref() == Some("sqs")
            })
            .count(),
    );
    let queues = rt
        .block_on(
            env.sqs()
                .list_queues()
                .queue_name_prefix("lambda_notifications01")
                .send(),
        )
        .unwrap()
        .queue_urls
        .unwrap_or_default();
    let queues: Vec<_> = queues
        .into_iter()
        .filter(|u| u.ends_with("/lambda_notifications01"))
        .collect();
    c.insert("queues", queues.len());
    let policies = queues
        .iter()
        .filter(|url| {
            rt.block_on(
                env.sqs()
                    .get_queue_attributes()
                    .queue_url(*url)
                    .attribute_names(aws_sdk_sqs::types::QueueAttributeName::Policy)
                    .send(),
            )
            .ok()
            .and_then(|o| o.attributes)
            .is_some_and(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::Policy)
                    .is_some_and(|p| !p.is_empty())
            })
        })
        .count();
    c.insert("queue policies", policies);

    let iam = env.iam();
    let role = rt
        .block_on(iam.get_role().role_name("lambda_iam_role01").send())
        .is_ok();
    c.insert("roles", usize::from(role));
    let customer = rt
        .block_on(
            iam.list_policies()
                .scope(aws_sdk_iam::types::PolicyScopeType::Local)
                .send(),
        )
        .unwrap()
        .policies
        .unwrap_or_default();
    c.insert(
        "policies",
        customer
            .iter()
            .filter(|p| p.policy_name.as_deref() == Some("lambda_policy01"))
            .count(),
    );
    let attached = if role {
        rt.block_on(
            iam.list_attached_role_policies()
                .role_name("lambda_iam_role01")
                .send(),
        )
        .unwrap()
        .attached_policies
        .unwrap_or_default()
        .len()
    } else {
        0
    };
    c.insert("role policy attachments", attached);

    let function = rt
        .block_on(
            env.lambda()
                .get_function()
                .function_name("lambda_function01")
                .send(),
        )
        .is_ok();
    c.insert("functions", usize::from(function));
    let statements = rt
        .block_on(
            env.lambda()
                .get_policy()
                .function_name("lambda_function01")
                .send(),
        )
        .ok()
        .and_then(|p| p.policy)
        .map(|p| {
            let doc: serde_json::Value = serde_json::from_str(&p).unwrap();
            doc["Statement"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter(|s| s["Sid"] == "AllowSlowResponseAlarm")
                        .count()
                })
                .unwrap_or(0)
        })
        .unwrap_or(0);
    c.insert("permission statements", statements);

    let groups = rt
        .block_on(
            env.ec2()
                .describe_security_groups()
                .filters(
                    Filter::builder()
                        .name("group-name")
                        .values("dev-instance-ssh-*")
                        .build(),
                )
                .send(),
        )
        .unwrap()
        .security_groups
        .unwrap_or_default();
    c.insert("security groups", groups.len());
    let instances = live_instances(env, "automate-monitoring");
    c.insert("instances", instances);
    env.take_calls();
    c
}

/// The instances a stack's ownership tags name that are not terminated.
pub fn live_instances(env: &Env, stack: &str) -> usize {
    let live = ["pending", "running", "stopping", "stopped"].map(String::from);
    env.rt
        .block_on(
            env.ec2()
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name("tag:stackctl:stack")
                        .values(stack)
                        .build(),
                )
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .set_values(Some(live.to_vec()))
                        .build(),
                )
                .send(),
        )
        .unwrap()
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum()
}

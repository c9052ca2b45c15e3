//! Import: what was built by hand becomes the stack's own. Import reads, and
//! changes nothing in AWS but the ownership tags.

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};
use aws_sdk_sns::types::Tag;

use crate::census;
use crate::support::{count, mutating, seed_stack_with_zip, Env};

const TOPIC: &str = r#"stack: imports
region: us-east-2
resources:
  alerts:
    type: aws_sns_topic
    properties:
      name: alerts
      display_name: Alerts
      tags: {team: sre}
"#;

fn hand_made_topic(env: &Env, name: &str, tags: &[(&str, &str)]) -> String {
    let tags = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap());
    let out = env
        .rt
        .block_on(
            env.sns()
                .create_topic()
                .name(name)
                .set_tags(Some(tags.collect()))
                .send(),
        )
        .unwrap();
    out.topic_arn.unwrap()
}

fn topic_tags(env: &Env, arn: &str) -> Vec<(String, String)> {
    let out = env
        .rt
        .block_on(env.sns().list_tags_for_resource().resource_arn(arn).send())
        .unwrap();
    let mut tags: Vec<_> = out
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    tags
}

#[test]
fn an_imported_resource_is_tagged_as_ours_and_the_plan_shows_only_real_differences() {
    let env = Env::new();
    let arn = hand_made_topic(&env, "alerts", &[("team", "sre")]);
    env.write_stack(TOPIC);
    env.take_calls();
    let out = env.stackctl(&["import", "alerts", &arn]).ok();
    assert!(
        out.stdout.contains(&format!("alerts: imported {arn}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Nothing was created, changed or deleted in AWS but the ownership tags of 1"),
        "{}",
        out.stdout
    );
    let changed: Vec<_> = mutating(&env.take_calls())
        .into_iter()
        .map(|c| c.operation.clone())
        .collect();
    assert_eq!(changed, ["TagResource"]);
    assert_eq!(
        topic_tags(&env, &arn),
        [
            ("stackctl:id".into(), "alerts".into()),
            ("stackctl:stack".into(), "imports".into()),
            ("team".into(), "sre".into())
        ]
    );
    let plan = env.stackctl(&["plan"]).ok().stdout;
    assert!(plan.contains("~ display_name"), "{plan}");
    assert!(
        plan.contains("0 to add, 1 to change, 0 to destroy"),
        "{plan}"
    );
}

#[test]
fn a_resource_of_another_stack_is_not_imported() {
    let env = Env::new();
    let arn = hand_made_topic(
        &env,
        "alerts",
        &[("stackctl:stack", "other"), ("stackctl:id", "alerts")],
    );
    env.write_stack(TOPIC);
    let out = env.stackctl(&["import", "alerts", &arn]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("belongs to stackctl stack `other`"),
        "{}",
        out.stderr
    );
    assert!(env.stackctl(&["state", "list"]).ok().stdout.is_empty());
}

#[test]
fn generated_config_imports_back_with_no_changes() {
    let env = Env::new();
    let topic = hand_made_topic(&env, "orders", &[]);
    let queue = env
        .rt
        .block_on(env.sqs().create_queue().queue_name("orders-inbox").send())
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = "arn:aws:sqs:us-east-2:123456789012:orders-inbox";
    let sub = env
        .rt
        .block_on(
            env.sns()
                .subscribe()
                .topic_arn(&topic)
                .protocol("sqs")
                .endpoint(queue_arn)
                .return_subscription_arn(true)
                .send(),
        )
        .unwrap()
        .subscription_arn
        .unwrap();
    env.take_calls();
    let out = env.stackctl(&[
        "import",
        "--generate-config",
        "generated.yaml",
        &format!("aws_sns_topic.orders={topic}"),
        &format!("aws_sqs_queue.inbox={queue}"),
        &format!("aws_sns_topic_subscription.inbox_subscription={sub}"),
    ]);
    let out = out.ok();
    assert!(
        out.stdout.contains("Wrote 3 resource(s) to generated.yaml"),
        "{}",
        out.stdout
    );
    assert!(
        mutating(&env.take_calls()).is_empty(),
        "generating only reads"
    );
    let text = std::fs::read_to_string(env.path("generated.yaml")).unwrap();
    assert!(text.contains("topic_arn: \"${orders.arn}\""), "{text}");
    assert!(text.contains("endpoint: \"${inbox.arn}\""), "{text}");
    env.stackctl(&["validate", "-f", "generated.yaml"]).ok();
    let out = env
        .stackctl(&["import", "--all", "-f", "generated.yaml"])
        .ok();
    assert!(
        out.stdout.contains("Imported 3 resource(s); 0 not found"),
        "{}",
        out.stdout
    );
    let plan = env.stackctl(&["plan", "--detailed-exitcode", "-f", "generated.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stdout);
}

/// The seed pipeline as the tutorial has it built in the console, mistakes
/// included: the alarm counts samples, SSH is open to the world, the log
/// group keeps logs forever, the topic has no display name.
fn console_built_pipeline(env: &Env) {
    let rt = &env.rt;
    let logs = env.logs();
    rt.block_on(logs.create_log_group().log_group_name("myloggroup").send())
        .unwrap();
    rt.block_on(
        logs.put_metric_filter()
            .log_group_name("myloggroup")
            .filter_name("SlowResponses")
            .filter_pattern("\"High response time\"")
            .metric_transformations(
                aws_sdk_cloudwatchlogs::types::MetricTransformation::builder()
                    .metric_name("SlowResponses")
                    .metric_namespace("MyApp")
                    .metric_value("1")
                    .build()
                    .unwrap(),
            )
            .send(),
    )
    .unwrap();
    let topic = hand_made_topic(env, "lambda_topic01", &[]);
    let queue = rt
        .block_on(
            env.sqs()
                .create_queue()
                .queue_name("lambda_notifications01")
                .send(),
        )
        .unwrap();
    let _ = queue;
    rt.block_on(
        env.sns()
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint("arn:aws:sqs:us-east-2:123456789012:lambda_notifications01")
            .send(),
    )
    .unwrap();
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role = rt
        .block_on(
            env.iam()
                .create_role()
                .role_name("lambda_iam_role01")
                .assume_role_policy_document(trust)
                .send(),
        )
        .unwrap()
        .role
        .unwrap()
        .arn;
    rt.block_on(
        env.iam()
            .attach_role_policy()
            .role_name("lambda_iam_role01")
            .policy_arn("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
            .send(),
    )
    .unwrap();
    let zip = std::fs::read(env.path("fn.zip")).unwrap();
    rt.block_on(
        env.lambda()
            .create_function()
            .function_name("lambda_function01")
            .role(role)
            .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
            .handler("bootstrap")
            .timeout(300)
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(zip.into())
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let function_arn = "arn:aws:lambda:us-east-2:123456789012:function:lambda_function01";
    rt.block_on(
        env.cloudwatch()
            .put_metric_alarm()
            .alarm_name("slow-responses")
            .namespace("MyApp")
            .metric_name("SlowResponses")
            .statistic(aws_sdk_cloudwatch::types::Statistic::SampleCount)
            .period(600)
            .evaluation_periods(1)
            .datapoints_to_alarm(1)
            .threshold(5.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold,
            )
            .alarm_actions(function_arn)
            .send(),
    )
    .unwrap();
    let ec2 = env.ec2();
    let group = rt
        .block_on(
            ec2.create_security_group()
                .group_name("dev-instance-ssh-console")
                .description("SSH from the operators' network only")
                .send(),
        )
        .unwrap()
        .group_id
        .unwrap();
    rt.block_on(
        ec2.authorize_security_group_ingress()
            .group_id(&group)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let mut images = rt
        .block_on(
            ec2.describe_images()
                .owners("amazon")
                .filters(
                    Filter::builder()
                        .name("name")
                        .values("al2023-ami-2023.*-x86_64")
                        .build(),
                )
                .filters(
                    Filter::builder()
                        .name("architecture")
                        .values("x86_64")
                        .build(),
                )
                .send(),
        )
        .unwrap()
        .images
        .unwrap_or_default();
    images.sort_by(|a, b| a.creation_date.cmp(&b.creation_date));
    let ami = images.pop().unwrap().image_id.unwrap();
    rt.block_on(
        ec2.run_instances()
            .image_id(ami)
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .security_group_ids(&group)
            .min_count(1)
            .max_count(1)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("Name")
                            .value("dev-instance")
                            .build(),
                    )
                    .build(),
            )
            .send(),
    )
    .unwrap();
}

#[test]
fn a_console_built_pipeline_is_imported_whole_and_then_corrected_in_place() {
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    console_built_pipeline(&env);
    env.take_calls();
    let out = env.stackctl(&["import", "--all"]).ok();
    for id in [
        "app_logs",
        "slow_responses",
        "slow_response_alarm",
        "lambda_topic",
        "notifications",
        "notifications_subscription",
        "lambda_role",
        "lambda_logging",
        "remediation",
        "ssh_access",
        "dev_instance",
    ] {
        assert!(
            out.stdout.contains(&format!("{id}: imported ")),
            "{id}:\n{}",
            out.stdout
        );
    }
    let tagged: Vec<_> = mutating(&env.take_calls())
        .into_iter()
        .filter(|c| !c.operation.contains("Tag"))
        .map(|c| c.operation.clone())
        .collect();
    assert!(
        tagged.is_empty(),
        "import changed more than tags: {tagged:?}"
    );

    let plan = env.stackctl(&["plan"]).ok().stdout;
    assert!(!plan.contains("must be replaced"), "{plan}");
    for fix in [
        "~ statistic",
        "~ ingress",
        "~ retention_in_days",
        "~ pattern",
    ] {
        assert!(plan.contains(fix), "{fix}:\n{plan}");
    }
    env.take_calls();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let calls = env.take_calls();
    for made_once in [
        "RunInstances",
        "CreateFunction",
        "CreateSecurityGroup",
        "CreateTopic",
        "CreateRole",
    ] {
        assert_eq!(
            count(&calls, made_once),
            0,
            "{made_once}: corrected in place, not made again"
        );
    }
    assert_eq!(census::count(&env), census::converged());
    assert_eq!(env.stackctl(&["plan", "--detailed-exitcode"]).code, 0);
    env.stackctl(&["destroy", "--auto-approve"]).ok();
    assert_eq!(census::count(&env), census::nothing());
}

//! A function's configuration that the stack file never named: a VPC or
//! layers attached in the console change how the remediation runs (in a VPC
//! without a NAT gateway it can no longer reach EC2), so they are drift.

use aws_sdk_lambda::types::VpcConfig;

use localaws::Fault;

use crate::support::{applied_seed_stack, count, seed_stack_with_zip, Env};

const FUNCTION: &str = "lambda_function01";

/// A subnet of moto's default VPC and a security group in it.
fn subnet_and_group(env: &Env) -> (String, String) {
    let ec2 = env.ec2();
    let subnets = env
        .rt
        .block_on(ec2.describe_subnets().send())
        .unwrap()
        .subnets
        .unwrap();
    let subnet = &subnets[0];
    let group = ec2
        .create_security_group()
        .group_name("function-vpc")
        .description("x")
        .vpc_id(subnet.vpc_id().unwrap());
    let group = env.rt.block_on(group.send()).unwrap().group_id.unwrap();
    (subnet.subnet_id().unwrap().to_string(), group)
}

/// A published layer version's ARN.
fn layer(env: &Env) -> String {
    let zip = stackctl::package::zip(&mut [stackctl::package::Entry {
        name: "extra",
        data: b"x",
        mode: 0o644,
    }])
    .unwrap();
    let content = aws_sdk_lambda::types::LayerVersionContentInput::builder()
        .zip_file(aws_sdk_lambda::primitives::Blob::new(zip))
        .build();
    let publish = env
        .lambda()
        .publish_layer_version()
        .layer_name("by-hand")
        .content(content);
    let out = env.rt.block_on(publish.send()).unwrap();
    out.layer_version_arn.unwrap()
}

#[test]
fn a_vpc_and_layers_attached_by_hand_are_drift_and_apply_detaches_them() {
    let env = applied_seed_stack();
    let (subnet, group) = subnet_and_group(&env);
    let vpc = VpcConfig::builder()
        .subnet_ids(subnet)
        .security_group_ids(group)
        .build();
    let by_hand = env
        .lambda()
        .update_function_configuration()
        .function_name(FUNCTION)
        .vpc_config(vpc)
        .layers(layer(&env));
    env.rt.block_on(by_hand.send()).unwrap();

    env.plan_shows_drift(
        "remediation (aws_lambda_function): layers, vpc_config changed outside stackctl",
    );
    assert_eq!(env.apply_sending(), ["UpdateFunctionConfiguration"]);
    let config = env.function_config();
    assert!(config.layers().is_empty(), "{:?}", config.layers);
    let subnets = config
        .vpc_config()
        .map(|v| v.subnet_ids())
        .unwrap_or_default();
    assert!(subnets.is_empty(), "{:?}", config.vpc_config);
    env.stackctl(&["plan", "--detailed-exitcode"]).ok();
}

#[test]
fn a_vpc_and_layers_the_stack_file_names_read_back_as_written() {
    let env = Env::new();
    let (subnet, group) = subnet_and_group(&env);
    let layer = layer(&env);
    let function = format!(
        "      memory_size: 128\n      layers: [{layer}]\n      vpc_config:\n        subnet_ids: [{subnet}]\n        security_group_ids: [{group}]\n"
    );
    let stack = seed_stack_with_zip(&env);
    assert!(stack.contains("      memory_size: 128\n"));
    env.write_stack(&stack.replacen("      memory_size: 128\n", &function, 1));
    env.stackctl(&["apply", "--auto-approve"]).ok();

    let config = env.function_config();
    assert_eq!(config.layers().len(), 1, "{:?}", config.layers);
    let subnets = config
        .vpc_config()
        .map(|v| v.subnet_ids())
        .unwrap_or_default();
    assert_eq!(subnets, [subnet]);
    env.stackctl(&["plan", "--detailed-exitcode"]).ok();
}

/// Code uploaded by hand in the console: the plan shows it, and apply puts
/// the stack's zip back.
#[test]
fn code_uploaded_by_hand_is_drift_and_apply_restores_the_stacks() {
    let env = applied_seed_stack();
    let ours = env.function_config().code_sha256.unwrap();
    let zip = stackctl::package::zip(&mut [stackctl::package::Entry {
        name: "bootstrap",
        data: b"#!/bin/sh\necho patched in the console\n",
        mode: 0o755,
    }])
    .unwrap();
    let by_hand = env
        .lambda()
        .update_function_code()
        .function_name(FUNCTION)
        .zip_file(aws_sdk_lambda::primitives::Blob::new(zip));
    env.rt.block_on(by_hand.send()).unwrap();

    env.plan_shows_drift(
        "remediation (aws_lambda_function): source_code_hash changed outside stackctl",
    );
    assert_eq!(env.apply_sending(), ["UpdateFunctionCode"]);
    assert_eq!(env.function_config().code_sha256.unwrap(), ours);
    env.stackctl(&["plan", "--detailed-exitcode"]).ok();
}

/// Right after its role is made or granted more, Lambda may refuse the role
/// for a while (IAM is eventually consistent): both refusals are waited out,
/// and the function is created once.
#[test]
fn a_role_lambda_cannot_use_yet_is_waited_for() {
    let env = Env::new();
    env.write_stack(&seed_stack_with_zip(&env));
    for message in [
        "The role defined for the function cannot be assumed by Lambda.",
        "The provided execution role does not have permissions to call CreateNetworkInterface on EC2",
    ] {
        let refusal = Fault::coded("lambda", "CreateFunction", 400, "InvalidParameterValueException", message);
        env.aws.inject(refusal);
    }
    env.take_calls();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let calls = env.take_calls();
    assert_eq!(count(&calls, "CreateFunction"), 3);
}

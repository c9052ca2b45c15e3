//! Security group rules as AWS keeps them: one rule per source, whatever the
//! stack file groups, and every source read, whoever set it.

use aws_sdk_ec2::types::{IpPermission, Ipv6Range, UserIdGroupPair};

use crate::support::{count, mutating_operations, Env};

const STACK: &str = r#"stack: firewall
region: us-east-2
resources:
  web:
    type: aws_security_group
    properties:
      name: web
      ingress:
        - {from_port: 443, to_port: 443, protocol: tcp, cidr_blocks: [10.0.0.0/8, 192.168.0.0/16]}
"#;

#[test]
fn a_rule_with_two_cidr_blocks_is_no_change_once_applied() {
    let env = Env::new();
    env.write_stack(STACK);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    env.stackctl(&["destroy", "--auto-approve"]).ok();
}

/// An IPv6 range and another group let in by hand in the console: the plan
/// shows them, and apply revokes exactly them.
#[test]
fn rules_added_by_hand_are_drift_and_apply_revokes_them() {
    let env = Env::new();
    env.write_stack(STACK);
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let id = env.physical_id("firewall", "web");
    let ec2 = env.ec2();
    let other = env
        .rt
        .block_on(
            ec2.create_security_group()
                .group_name("other")
                .description("x")
                .send(),
        )
        .unwrap()
        .group_id
        .unwrap();
    let by_hand = [
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
            .build(),
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(3306)
            .to_port(3306)
            .user_id_group_pairs(UserIdGroupPair::builder().group_id(&other).build())
            .build(),
    ];
    let authorize = ec2
        .authorize_security_group_ingress()
        .group_id(&id)
        .set_ip_permissions(Some(by_hand.to_vec()));
    env.rt.block_on(authorize.send()).unwrap();

    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout.contains("ingress changed outside stackctl"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\"::/0\""), "{}", out.stdout);
    env.take_calls();
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let calls = env.take_calls();
    let sent = mutating_operations(&calls);
    assert_eq!(sent, ["RevokeSecurityGroupIngress"], "{sent:?}");
    let group = env
        .rt
        .block_on(ec2.describe_security_groups().group_ids(&id).send())
        .unwrap()
        .security_groups
        .unwrap()
        .remove(0);
    let permissions = group.ip_permissions.unwrap_or_default();
    assert!(
        permissions.iter().all(|p| p.from_port == Some(443)),
        "{permissions:?}"
    );
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(count(&env.take_calls(), "RevokeSecurityGroupIngress"), 0);
    env.stackctl(&["destroy", "--auto-approve"]).ok();
}

/// `self: true` (Terraform's spelling) lets the group's own members in: it is
/// authorized as the group itself, beside the rule's CIDR block, and reads
/// back as written.
#[test]
fn a_rule_from_the_group_itself_is_the_group_and_reads_back_as_self() {
    let env = Env::new();
    env.write_stack(&STACK.replace(
        "cidr_blocks: [10.0.0.0/8, 192.168.0.0/16]}",
        "self: true, cidr_blocks: [10.0.0.0/8]}",
    ));
    env.stackctl(&["apply", "--auto-approve"]).ok();
    let id = env.physical_id("firewall", "web");
    let groups = env
        .rt
        .block_on(env.ec2().describe_security_groups().group_ids(&id).send());
    let ingress = groups.unwrap().security_groups.unwrap()[0]
        .ip_permissions()
        .to_vec();
    let pairs: Vec<_> = ingress
        .iter()
        .flat_map(|p| p.user_id_group_pairs())
        .collect();
    assert_eq!(pairs.len(), 1, "{ingress:?}");
    assert_eq!(pairs[0].group_id(), Some(id.as_str()));
    let out = env.stackctl(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    env.stackctl(&["destroy", "--auto-approve"]).ok();
}

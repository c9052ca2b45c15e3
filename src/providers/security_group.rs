use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, TagSpecification};
use serde_json::{json, Map, Value};

use super::Typed;
use super::{
    absent, attrs, exactly_one, retry_eventual, split_tags, str_list, tagging, Attrs, Created, Ctx,
    Observed, Provider, ProviderError, ReadResult, Resource, Update,
};
use crate::schema::{
    is_unknown, unknown, Actions, ActsOn, Attr, Compare, Default, Names, Part, Prop, Props, Schema,
    Service, Tagging, Type,
};

pub struct SecurityGroup;

fn check_cidrs(v: &Value) -> Result<(), String> {
    for c in str_list(Some(v)) {
        let (ip, bits) = c
            .split_once('/')
            .ok_or_else(|| format!("`{c}` is not a CIDR block such as 203.0.113.0/24"))?;
        let bits: u8 = bits
            .parse()
            .map_err(|_| format!("`{c}` has a bad prefix length"))?;
        let v4 = ip.parse::<std::net::Ipv4Addr>().is_ok() && bits <= 32;
        let v6 = ip.parse::<std::net::Ipv6Addr>().is_ok() && bits <= 128;
        if !v4 && !v6 {
            return Err(format!("`{c}` is not a CIDR block such as 203.0.113.0/24"));
        }
    }
    Ok(())
}

static RULE: &[Prop] = &[
    Prop::new("from_port", Type::Int, "First port (0 with protocol -1).").required(),
    Prop::new("to_port", Type::Int, "Last port (0 with protocol -1).").required(),
    Prop::new("protocol", Type::String, "tcp, udp, icmp or -1 (all).")
        .required()
        .check(|v| match v.as_str() {
            Some("tcp" | "udp" | "icmp" | "icmpv6" | "-1") => Ok(()),
            _ => Err("must be tcp, udp, icmp, icmpv6 or -1".into()),
        }),
    Prop::new(
        "cidr_blocks",
        Type::List(&Type::String),
        "IPv4 CIDR blocks.",
    )
    .required()
    .check(check_cidrs),
    Prop::new("description", Type::String, "Rule description."),
];

static RULES: Type = Type::List(&Type::Object(RULE));

static SCHEMA: Schema = Schema {
    type_name: "aws_security_group",
    service: Service::Ec2,
    doc: "An EC2 security group. Its id is the group id. Without `egress`, AWS's default allow-all egress rule stays.",
    props: &[
        Prop::new("name", Type::String, "Group name (or set `name_prefix`).")
            .force_new()
            .derived_from("name_prefix")
            .check(check_group_name),
        Prop::new(
            "name_prefix",
            Type::String,
            "A unique name is made from this prefix, so a replacement can be created before the group it replaces is deleted.",
        )
        .force_new()
        .check(|v| match v.as_str() {
            Some(s) if s.len() <= 100 && !s.starts_with("sg-") => Ok(()),
            _ => Err("must be at most 100 characters and not start with sg-".into()),
        }),
        Prop::new("description", Type::String, "Description.").default(Default::Str("Managed by stackctl")).force_new(),
        Prop::new("vpc_id", Type::String, "VPC (default: the default VPC).").force_new(),
        Prop::new("ingress", RULES, "Inbound rules.").compare(Compare::Set),
        Prop::new("egress", RULES, "Outbound rules.").compare(Compare::Set),
        Prop::tags(),
    ],
    attrs: &[
        Attr::new("id", "Group id (sg-...)."),
        Attr::new("arn", "Group ARN."),
        Attr::new("owner_id", "Owning account."),
        Attr::new("name", "Group name (the one AWS made of `name_prefix`, if that was given)."),
    ],
    tagging: Tagging::Ec2,
    identity: &["name", "vpc_id"],
    in_use_blocks_delete: true,
    arn_format: Some("arn:aws:ec2:{region}:{account}:security-group/{id}"),
    cross_check: Some(cross_check),
    names: &[("id", Names::Id), ("arn", Names::Arn), ("name", Names::Name)],
    part: Part::Firewall,
    actions: Actions {
        read: &["ec2:DescribeSecurityGroups"],
        create: &["ec2:CreateSecurityGroup", "ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress"],
        update: &["ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress"],
        delete: &["ec2:DeleteSecurityGroup"],
        on: ActsOn::Tagged,
    },
    ..Schema::BASE
};

impl Typed for SecurityGroup {
    const SCHEMA: &'static Schema = &SCHEMA;
}

fn check_group_name(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if !s.is_empty() && s.len() <= 255 && !s.starts_with("sg-") => Ok(()),
        _ => Err("must be 1 to 255 characters and not start with sg-".into()),
    }
}

fn cross_check(p: &Props) -> Vec<(&'static str, String)> {
    exactly_one(
        p,
        ["name", "name_prefix"],
        "set `name` or `name_prefix`, not both",
        "set `name`, or `name_prefix` for a generated unique name",
    )
    .into_iter()
    .collect()
}

/// The group's name: as written, or the prefix and a suffix from the create's
/// token (the same on every retry of that create, unique to it).
fn group_name(r: &Resource<'_>) -> Result<String, ProviderError> {
    match (
        r.props.get("name").filter(|n| !is_unknown(n)),
        r.str("name_prefix"),
    ) {
        (Some(Value::String(name)), _) => Ok(name.clone()),
        (_, Some(prefix)) if !r.token.is_empty() => Ok(format!(
            "{prefix}{}",
            r.token.replace('-', "").get(..20).unwrap_or_default()
        )),
        _ => Err(ProviderError::refused("property `name` is missing")),
    }
}

pub fn tag_spec(kind: ResourceType, tags: Vec<(String, String)>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tagging::ec2(tags)))
        .build()
}

/// One rule per CIDR block: the unit AWS authorizes and revokes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    protocol: String,
    from: i64,
    to: i64,
    cidr: String,
    description: Option<String>,
}

fn rules_of(v: Option<&Value>) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for r in v.and_then(Value::as_array).into_iter().flatten() {
        for cidr in str_list(r.get("cidr_blocks")) {
            out.insert(Rule {
                protocol: r
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("-1")
                    .to_string(),
                from: r.get("from_port").and_then(Value::as_i64).unwrap_or(0),
                to: r.get("to_port").and_then(Value::as_i64).unwrap_or(0),
                cidr,
                description: r
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
    }
    out
}

fn permissions(rules: &BTreeSet<Rule>) -> Vec<IpPermission> {
    rules
        .iter()
        .map(|r| {
            let all = r.protocol == "-1";
            IpPermission::builder()
                .ip_protocol(&r.protocol)
                .set_from_port((!all).then_some(r.from as i32))
                .set_to_port((!all).then_some(r.to as i32))
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip(&r.cidr)
                        .set_description(r.description.clone())
                        .build(),
                )
                .build()
        })
        .collect()
}

/// AWS's rules in the shape of the schema, CIDRs grouped per port range.
fn rules_value(perms: Vec<IpPermission>) -> Value {
    let mut rules = Vec::new();
    for p in perms {
        let protocol = p.ip_protocol.unwrap_or_else(|| "-1".into());
        let (from, to) = if protocol == "-1" {
            (0, 0)
        } else {
            (p.from_port.unwrap_or(0), p.to_port.unwrap_or(0))
        };
        for range in p.ip_ranges.unwrap_or_default() {
            let mut rule = json!({"from_port": from, "to_port": to, "protocol": protocol, "cidr_blocks": [range.cidr_ip.unwrap_or_default()]});
            if let Some(d) = range.description.filter(|d| !d.is_empty()) {
                rule["description"] = Value::from(d);
            }
            rules.push(rule);
        }
    }
    Value::Array(rules)
}

const NO_GROUP: &[&str] = &["InvalidGroup.NotFound", "InvalidGroupId.Malformed"];

async fn describe(
    cx: &Ctx,
    id: &str,
) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>, ProviderError> {
    let got = send!(cx.ec2().describe_security_groups().group_ids(id));
    Ok(absent(got, NO_GROUP)?
        .and_then(|out| out.security_groups.unwrap_or_default().into_iter().next()))
}

fn group_attrs(cx: &Ctx, g: &aws_sdk_ec2::types::SecurityGroup) -> Map<String, Value> {
    let id = g.group_id.clone().unwrap_or_default();
    let owner = g.owner_id.clone().unwrap_or_default();
    let arn = g
        .security_group_arn
        .clone()
        .unwrap_or_else(|| format!("arn:aws:ec2:{}:{owner}:security-group/{id}", cx.region()));
    attrs([
        ("id", id.into()),
        ("arn", arn.into()),
        ("owner_id", owner.into()),
        ("name", g.group_name.clone().unwrap_or_default().into()),
    ])
}

/// Makes the group's rules in one direction match `want`.
/// The group's rules in one direction, as AWS has them now.
async fn current_rules(cx: &Ctx, id: &str, egress: bool) -> Result<BTreeSet<Rule>, ProviderError> {
    let g = describe(cx, id)
        .await?
        .ok_or_else(|| ProviderError::unexpected(format!("security group {id} is gone")))?;
    let perms = if egress {
        g.ip_permissions_egress
    } else {
        g.ip_permissions
    };
    Ok(rules_of(Some(&rules_value(perms.unwrap_or_default()))))
}

/// Makes the group's rules in one direction match `want`, from what AWS has.
/// A rule already there (a retry after a lost answer added it) or already
/// gone is read again and the rest done once more, rather than failing.
async fn settle_rules(
    cx: &Ctx,
    id: &str,
    egress: bool,
    want: &BTreeSet<Rule>,
) -> Result<(), ProviderError> {
    let have = current_rules(cx, id, egress).await?;
    match sync_rules(cx, id, egress, &have, want).await {
        Err(e) if e.is("InvalidPermission.Duplicate") || e.is("InvalidPermission.NotFound") => {
            let have = current_rules(cx, id, egress).await?;
            sync_rules(cx, id, egress, &have, want).await
        }
        other => other,
    }
}

async fn sync_rules(
    cx: &Ctx,
    id: &str,
    egress: bool,
    have: &BTreeSet<Rule>,
    want: &BTreeSet<Rule>,
) -> Result<(), ProviderError> {
    let revoke: BTreeSet<Rule> = have.difference(want).cloned().collect();
    let grant: BTreeSet<Rule> = want.difference(have).cloned().collect();
    if !revoke.is_empty() {
        let perms = Some(permissions(&revoke));
        if egress {
            send!(cx
                .ec2()
                .revoke_security_group_egress()
                .group_id(id)
                .set_ip_permissions(perms))?;
        } else {
            send!(cx
                .ec2()
                .revoke_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(perms))?;
        }
    }
    if !grant.is_empty() {
        let perms = Some(permissions(&grant));
        if egress {
            send!(cx
                .ec2()
                .authorize_security_group_egress()
                .group_id(id)
                .set_ip_permissions(perms))?;
        } else {
            send!(cx
                .ec2()
                .authorize_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(perms))?;
        }
    }
    Ok(())
}

#[async_trait]
impl Provider for SecurityGroup {
    fn derive(&self, props: &mut Props, _: &std::path::Path) -> Result<(), (&'static str, String)> {
        if props.contains_key("name_prefix") && !props.contains_key("name") {
            props.insert("name".into(), unknown());
        }
        Ok(())
    }

    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let out = send!(cx
            .ec2()
            .create_security_group()
            .group_name(group_name(r)?)
            .description(r.str("description").unwrap_or("Managed by stackctl"))
            .set_vpc_id(r.str("vpc_id").map(str::to_string))
            .tag_specifications(tag_spec(
                ResourceType::SecurityGroup,
                r.tags_with_ownership(cx),
            )))?;
        let id = out
            .group_id
            .ok_or_else(|| ProviderError::unexpected("CreateSecurityGroup returned no GroupId"))?;
        let rules = async {
            settle_rules(cx, &id, false, &rules_of(r.props.get("ingress"))).await?;
            if r.props.contains_key("egress") {
                settle_rules(cx, &id, true, &rules_of(r.props.get("egress"))).await?;
            }
            describe(cx, &id)
                .await?
                .ok_or_else(|| ProviderError::unexpected("the new group cannot be read back"))
        };
        let g = rules.await.map_err(|e| e.after_create(&id))?;
        Ok(Created::new(id, group_attrs(cx, &g)))
    }

    async fn read(&self, cx: &Ctx, id: &str) -> ReadResult {
        let Some(g) = describe(cx, id).await? else {
            return Ok(None);
        };
        let attrs = group_attrs(cx, &g);
        let mut p = Props::new();
        p.insert("name".into(), Value::from(g.group_name.unwrap_or_default()));
        p.insert(
            "description".into(),
            Value::from(g.description.unwrap_or_default()),
        );
        p.insert("vpc_id".into(), Value::from(g.vpc_id.unwrap_or_default()));
        p.insert(
            "ingress".into(),
            rules_value(g.ip_permissions.unwrap_or_default()),
        );
        p.insert(
            "egress".into(),
            rules_value(g.ip_permissions_egress.unwrap_or_default()),
        );
        let (tags, owner) = split_tags(
            g.tags
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| Some((t.key?, t.value?))),
        );
        p.insert("tags".into(), tags);
        Ok(Some(Observed {
            props: p,
            attrs,
            owner,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let Update { id, r, changed, .. } = *u;
        let g = describe(cx, id)
            .await?
            .ok_or_else(|| ProviderError::unexpected(format!("security group {id} is gone")))?;
        if changed.contains(&"ingress") {
            settle_rules(cx, id, false, &rules_of(r.props.get("ingress"))).await?;
        }
        if changed.contains(&"egress") {
            settle_rules(cx, id, true, &rules_of(r.props.get("egress"))).await?;
        }
        Ok(group_attrs(cx, &g))
    }

    async fn delete(&self, cx: &Ctx, id: &str, _props: &Props) -> Result<(), ProviderError> {
        // An instance that was just terminated still holds the group for a while.
        let result = retry_eventual(
            Duration::from_secs(300),
            |e| e.is("DependencyViolation"),
            || async { send!(cx.ec2().delete_security_group().group_id(id)) },
        )
        .await;
        absent(result, NO_GROUP).map(|_| ())
    }

    async fn find(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Option<String>, ProviderError> {
        let mut req = cx.ec2().describe_security_groups().filters(
            Filter::builder()
                .name("group-name")
                .values(group_name(r)?)
                .build(),
        );
        if let Some(vpc) = r.str("vpc_id") {
            req = req.filters(Filter::builder().name("vpc-id").values(vpc).build());
        }
        let out = send!(req)?;
        Ok(out
            .security_groups
            .unwrap_or_default()
            .into_iter()
            .next()
            .and_then(|g| g.group_id))
    }

    /// By name, or for a generated name the one group whose name starts
    /// with the prefix.
    async fn find_existing(
        &self,
        cx: &Ctx,
        r: &Resource<'_>,
    ) -> Result<Option<String>, ProviderError> {
        let Some(prefix) = r
            .str("name_prefix")
            .filter(|_| r.props.get("name").is_none_or(is_unknown))
        else {
            return self.find(cx, r).await;
        };
        let mut req = cx.ec2().describe_security_groups().filters(
            Filter::builder()
                .name("group-name")
                .values(format!("{prefix}*"))
                .build(),
        );
        if let Some(vpc) = r.str("vpc_id") {
            req = req.filters(Filter::builder().name("vpc-id").values(vpc).build());
        }
        let groups = send!(req)?.security_groups.unwrap_or_default();
        Ok(match groups.as_slice() {
            [only] => only.group_id.clone(),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::IpRange;

    #[test]
    fn each_range_of_a_permission_reads_as_one_rule_and_all_traffic_as_ports_zero() {
        let range = |cidr: &str, description: Option<&str>| {
            IpRange::builder()
                .cidr_ip(cidr)
                .set_description(description.map(str::to_string))
                .build()
        };
        let ssh = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ip_ranges(range("10.0.0.0/8", Some("office")))
            .ip_ranges(range("192.168.0.0/16", Some("")))
            .build();
        let all = IpPermission::builder()
            .ip_protocol("-1")
            .from_port(-1)
            .to_port(-1)
            .ip_ranges(range("0.0.0.0/0", None))
            .build();
        assert_eq!(
            rules_value(vec![ssh, all]),
            json!([
                {"from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": ["10.0.0.0/8"], "description": "office"},
                {"from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": ["192.168.0.0/16"]},
                {"from_port": 0, "to_port": 0, "protocol": "-1", "cidr_blocks": ["0.0.0.0/0"]},
            ])
        );
    }
}

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, TagSpecification,
    UserIdGroupPair,
};
use serde_json::{json, Map, Value};

use super::Typed;
use super::{
    absent, attrs, check_prefixed, exactly_one, retry_eventual, split_tags, str_list, tagging,
    Attrs, Created, Ctx, Observed, Provider, ProviderError, ReadResult, Resource, Update,
};
use crate::schema::{
    is_unknown, unknown, Actions, ActsOn, Attr, Compare, Default, Names, Part, Prop, Props, Schema,
    Service, Tagging, Type,
};

pub struct SecurityGroup;

/// CIDR blocks of one IP version: `203.0.113.0/24`, `2001:db8::/32`.
fn check_cidrs(v: &Value, v6: bool) -> Result<(), String> {
    let (kind, example) = match v6 {
        false => ("", "203.0.113.0/24"),
        true => ("IPv6 ", "2001:db8::/32"),
    };
    for c in str_list(Some(v)) {
        let parsed = c.split_once('/').and_then(|(ip, bits)| {
            let bits: u8 = bits.parse().ok()?;
            match v6 {
                false => (ip.parse::<std::net::Ipv4Addr>().is_ok() && bits <= 32).then_some(()),
                true => (ip.parse::<std::net::Ipv6Addr>().is_ok() && bits <= 128).then_some(()),
            }
        });
        if parsed.is_none() {
            return Err(format!(
                "must be {kind}CIDR blocks such as {example} (`{c}` is not)"
            ));
        }
    }
    Ok(())
}

/// Where a rule's traffic comes from (ingress) or goes to (egress): each
/// element of each, and `self: true`, is a rule of its own to AWS.
const SOURCES: &[&str] = &[
    "cidr_blocks",
    "ipv6_cidr_blocks",
    "security_groups",
    "prefix_list_ids",
    "self",
];

static RULE: &[Prop] = &[
    Prop::new("from_port", Type::Int, "First port (0 with protocol -1).").required(),
    Prop::new("to_port", Type::Int, "Last port (0 with protocol -1).").required(),
    Prop::new(
        "protocol",
        Type::String,
        "tcp, udp, icmp, icmpv6 or -1 (all).",
    )
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
    .check(|v| check_cidrs(v, false)),
    Prop::new(
        "ipv6_cidr_blocks",
        Type::List(&Type::String),
        "IPv6 CIDR blocks.",
    )
    .check(|v| check_cidrs(v, true)),
    Prop::new(
        "security_groups",
        Type::List(&Type::String),
        "Security group ids (sg-...): traffic from (ingress) or to (egress) their members.",
    )
    .takes(&[("aws_security_group", Names::Id)])
    .check(|v| check_prefixed(v, "sg-", "security group")),
    Prop::new(
        "prefix_list_ids",
        Type::List(&Type::String),
        "Managed prefix list ids (pl-...).",
    )
    .check(|v| check_prefixed(v, "pl-", "prefix list")),
    Prop::new(
        "self",
        Type::Bool,
        "The group itself: traffic from (ingress) or to (egress) its own members.",
    ),
    Prop::new("description", Type::String, "Rule description."),
];

/// What AWS refuses of a rule as a whole.
fn check_rules(v: &Value) -> Result<(), String> {
    for (i, rule) in v.as_array().into_iter().flatten().enumerate() {
        let n = i + 1;
        let names_one = |source: &Value| match source {
            Value::Array(a) => !a.is_empty(),
            other => other == &Value::Bool(true),
        };
        if !SOURCES.iter().filter_map(|s| rule.get(*s)).any(names_one) {
            return Err(format!("rule {n} allows no one: give it cidr_blocks, ipv6_cidr_blocks, security_groups, prefix_list_ids or self: true"));
        }
        let port = |k: &str| rule.get(k).and_then(Value::as_i64).unwrap_or(0);
        if rule.get("protocol").and_then(Value::as_str) == Some("-1")
            && (port("from_port"), port("to_port")) != (0, 0)
        {
            return Err(format!("rule {n}: with protocol -1 (all traffic) from_port and to_port are 0 (AWS keeps no ports for it)"));
        }
    }
    Ok(())
}

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
        Prop::new("ingress", RULES, "Inbound rules.")
            .compare(Compare::SetPer(SOURCES))
            .check(check_rules),
        Prop::new("egress", RULES, "Outbound rules.")
            .compare(Compare::SetPer(SOURCES))
            .check(check_rules),
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

/// Where one rule's traffic comes from or goes to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Ipv4(String),
    Ipv6(String),
    Group(String),
    PrefixList(String),
}

impl Source {
    fn of(field: &str, value: String) -> Option<Source> {
        Some(match field {
            "cidr_blocks" => Source::Ipv4(value),
            "ipv6_cidr_blocks" => Source::Ipv6(value),
            "security_groups" => Source::Group(value),
            "prefix_list_ids" => Source::PrefixList(value),
            _ => return None,
        })
    }

    /// The rule's field for it, and its value.
    fn field(&self) -> (&'static str, &str) {
        match self {
            Source::Ipv4(v) => ("cidr_blocks", v),
            Source::Ipv6(v) => ("ipv6_cidr_blocks", v),
            Source::Group(v) => ("security_groups", v),
            Source::PrefixList(v) => ("prefix_list_ids", v),
        }
    }
}

/// One rule per source: the unit AWS authorizes and revokes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    protocol: String,
    from: i64,
    to: i64,
    source: Source,
    description: Option<String>,
}

/// The rules of the group `own` as the schema writes them, one per source.
fn rules_of(v: Option<&Value>, own: &str) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for r in v.and_then(Value::as_array).into_iter().flatten() {
        let protocol = r.get("protocol").and_then(Value::as_str).unwrap_or("-1");
        let description = r.get("description").and_then(Value::as_str);
        let itself = (r.get("self") == Some(&Value::Bool(true))).then(|| Source::Group(own.into()));
        let listed = SOURCES.iter().flat_map(|field| {
            str_list(r.get(*field))
                .into_iter()
                .filter_map(|v| Source::of(field, v))
        });
        for source in itself.into_iter().chain(listed) {
            out.insert(Rule {
                protocol: protocol.to_string(),
                from: r.get("from_port").and_then(Value::as_i64).unwrap_or(0),
                to: r.get("to_port").and_then(Value::as_i64).unwrap_or(0),
                source,
                description: description.map(str::to_string),
            });
        }
    }
    out
}

fn permissions(rules: &BTreeSet<Rule>) -> Vec<IpPermission> {
    rules.iter().map(permission).collect()
}

fn permission(r: &Rule) -> IpPermission {
    let all = r.protocol == "-1";
    let description = r.description.clone();
    let p = IpPermission::builder()
        .ip_protocol(&r.protocol)
        .set_from_port((!all).then_some(r.from as i32))
        .set_to_port((!all).then_some(r.to as i32));
    match &r.source {
        Source::Ipv4(cidr) => p.ip_ranges(
            IpRange::builder()
                .cidr_ip(cidr)
                .set_description(description)
                .build(),
        ),
        Source::Ipv6(cidr) => p.ipv6_ranges(
            Ipv6Range::builder()
                .cidr_ipv6(cidr)
                .set_description(description)
                .build(),
        ),
        Source::Group(id) => p.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(id)
                .set_description(description)
                .build(),
        ),
        Source::PrefixList(id) => p.prefix_list_ids(
            PrefixListId::builder()
                .prefix_list_id(id)
                .set_description(description)
                .build(),
        ),
    }
    .build()
}

/// Every source of a permission, with its description: rules set by hand
/// (an IPv6 range, another group) are read as well as the stack's own.
fn sources_of(p: IpPermission) -> Vec<(Source, Option<String>)> {
    let mut sources = Vec::new();
    for r in p.ip_ranges.unwrap_or_default() {
        sources.push((r.cidr_ip.map(Source::Ipv4), r.description));
    }
    for r in p.ipv6_ranges.unwrap_or_default() {
        sources.push((r.cidr_ipv6.map(Source::Ipv6), r.description));
    }
    for g in p.user_id_group_pairs.unwrap_or_default() {
        sources.push((g.group_id.map(Source::Group), g.description));
    }
    for l in p.prefix_list_ids.unwrap_or_default() {
        sources.push((l.prefix_list_id.map(Source::PrefixList), l.description));
    }
    let described = |d: Option<String>| d.filter(|d| !d.is_empty());
    sources
        .into_iter()
        .filter_map(|(source, description)| Some((source?, described(description))))
        .collect()
}

/// AWS's rules of the group `own` in the shape of the schema, one rule per
/// source; the group itself as `self: true`.
fn rules_value(perms: Vec<IpPermission>, own: &str) -> Value {
    let mut rules = Vec::new();
    for p in perms {
        let protocol = p.ip_protocol.clone().unwrap_or_else(|| "-1".into());
        let (from, to) = match protocol.as_str() {
            "-1" => (0, 0),
            _ => (p.from_port.unwrap_or(0), p.to_port.unwrap_or(0)),
        };
        for (source, description) in sources_of(p) {
            let (field, value) = match &source {
                Source::Group(id) if id == own => ("self", Value::Bool(true)),
                other => (other.field().0, json!([other.field().1])),
            };
            let mut rule =
                json!({"from_port": from, "to_port": to, "protocol": protocol, field: value});
            if let Some(d) = description {
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
    Ok(rules_of(
        Some(&rules_value(perms.unwrap_or_default(), id)),
        id,
    ))
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
            settle_rules(cx, &id, false, &rules_of(r.props.get("ingress"), &id)).await?;
            if r.props.contains_key("egress") {
                settle_rules(cx, &id, true, &rules_of(r.props.get("egress"), &id)).await?;
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
            rules_value(g.ip_permissions.unwrap_or_default(), id),
        );
        p.insert(
            "egress".into(),
            rules_value(g.ip_permissions_egress.unwrap_or_default(), id),
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
            settle_rules(cx, id, false, &rules_of(r.props.get("ingress"), id)).await?;
        }
        if changed.contains(&"egress") {
            settle_rules(cx, id, true, &rules_of(r.props.get("egress"), id)).await?;
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
            rules_value(vec![ssh, all], OWN),
            json!([
                {"from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": ["10.0.0.0/8"], "description": "office"},
                {"from_port": 22, "to_port": 22, "protocol": "tcp", "cidr_blocks": ["192.168.0.0/16"]},
                {"from_port": 0, "to_port": 0, "protocol": "-1", "cidr_blocks": ["0.0.0.0/0"]},
            ])
        );
    }

    /// What the console adds beside a stack's IPv4 rules is read too: else
    /// it would stay open, unseen.
    #[test]
    fn ipv6_ranges_other_groups_and_prefix_lists_read_as_rules_of_their_own() {
        let ssh = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
            .user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id("sg-1")
                    .user_id("123456789012")
                    .description("bastion")
                    .build(),
            )
            .prefix_list_ids(PrefixListId::builder().prefix_list_id("pl-1").build())
            .build();
        let read = rules_value(vec![ssh], OWN);
        assert_eq!(
            read,
            json!([
                {"from_port": 22, "to_port": 22, "protocol": "tcp", "ipv6_cidr_blocks": ["::/0"]},
                {"from_port": 22, "to_port": 22, "protocol": "tcp", "security_groups": ["sg-1"], "description": "bastion"},
                {"from_port": 22, "to_port": 22, "protocol": "tcp", "prefix_list_ids": ["pl-1"]},
            ])
        );
        let rules = rules_of(Some(&read), OWN);
        let sent = permissions(&rules);
        assert_eq!(
            rules_of(Some(&rules_value(sent, OWN)), OWN),
            rules,
            "read as sent"
        );
    }

    #[test]
    fn the_group_itself_reads_as_self_and_is_sent_as_the_group() {
        let own = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(5432)
            .to_port(5432)
            .user_id_group_pairs(UserIdGroupPair::builder().group_id(OWN).build())
            .build();
        let read = rules_value(vec![own], OWN);
        assert_eq!(
            read,
            json!([{"from_port": 5432, "to_port": 5432, "protocol": "tcp", "self": true}])
        );
        let rules = rules_of(Some(&read), OWN);
        assert_eq!(
            rules.iter().map(|r| &r.source).collect::<Vec<_>>(),
            [&Source::Group(OWN.into())]
        );
    }

    const OWN: &str = "sg-own";
}

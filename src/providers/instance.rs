use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, InstanceStateName, InstanceType, ResourceType};
use serde_json::{Map, Value};

use super::security_group::tag_spec;
use super::Typed;
use super::{
    absent, attrs, aws, split_tags, str_list, wait_for, Attrs, Created, Ctx, Observed, Provider,
    ProviderError, ReadResult, Resource, Update,
};
use crate::schema::{
    Actions, ActsOn, Attr, Compare, Default, Names, Part, Prop, Props, Schema, Service, Tagging,
    Type,
};

pub struct Instance;

static SCHEMA: Schema = Schema {
    type_name: "aws_instance",
    service: Service::Ec2,
    doc: "An EC2 instance. Its id is the instance id. Changing the AMI or the instance type replaces it.",
    props: &[
        Prop::new("ami", Type::String, "Image id.").takes(&[("aws_ami", Names::Id)]).required().force_new().check(|v| match v.as_str() {
            Some(s) if s.starts_with("ami-") && s.len() > 4 => Ok(()),
            _ => Err("must be an image id such as ami-0123456789abcdef0".into()),
        }),
        Prop::new("instance_type", Type::String, "Instance type, e.g. t3.micro.").required().force_new().check(|v| {
            match v.as_str() {
                Some(s) if s.contains('.') => Ok(()),
                _ => Err("must be an instance type such as t3.micro".into()),
            }
        }),
        Prop::new("vpc_security_group_ids", Type::List(&Type::String), "Security groups.")
            .takes(&[("aws_security_group", Names::Id)])
            .compare(Compare::Set),
        Prop::new("subnet_id", Type::String, "Subnet (default: one of the default VPC).").force_new(),
        Prop::new("key_name", Type::String, "EC2 key pair for SSH.").force_new(),
        Prop::new("tags", Type::StringMap, "Tags; `Name` is what the console shows.").default(Default::EmptyMap),
    ],
    attrs: &[
        Attr::new("id", "Instance id."),
        Attr::new("arn", "Instance ARN."),
        Attr::new("public_ip", "Public IPv4 address, if any."),
        Attr::new("private_ip", "Private IPv4 address."),
        Attr::new("instance_state", "State when last read (running, stopped, ...)."),
    ],
    tagging: Tagging::Ec2,
    identity: &[],
    arn_format: Some("arn:aws:ec2:{region}:{account}:instance/{id}"),
    names: &[("id", Names::Id), ("arn", Names::Arn)],
    part: Part::Instance,
    actions: Actions {
        read: &["ec2:DescribeInstances"],
        create: &["ec2:RunInstances"],
        update: &["ec2:ModifyInstanceAttribute"],
        delete: &["ec2:TerminateInstances"],
        on: ActsOn::Tagged,
    },
    ..Schema::BASE
};

impl Typed for Instance {
    const SCHEMA: &'static Schema = &SCHEMA;
}

const NO_INSTANCE: &[&str] = &["InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"];

async fn describe(
    cx: &Ctx,
    id: &str,
) -> Result<Option<(aws_sdk_ec2::types::Instance, String)>, ProviderError> {
    let got = send!(cx.ec2().describe_instances().instance_ids(id));
    let Some(out) = absent(got, NO_INSTANCE)? else {
        return Ok(None);
    };
    for reservation in out.reservations.unwrap_or_default() {
        let owner = reservation.owner_id.unwrap_or_default();
        if let Some(i) = reservation.instances.unwrap_or_default().into_iter().next() {
            return Ok(Some((i, owner)));
        }
    }
    Ok(None)
}

fn state_of(i: &aws_sdk_ec2::types::Instance) -> Option<InstanceStateName> {
    i.state.as_ref().and_then(|s| s.name.clone())
}

fn gone(i: &aws_sdk_ec2::types::Instance) -> bool {
    matches!(
        state_of(i),
        Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
    )
}

fn instance_attrs(cx: &Ctx, i: &aws_sdk_ec2::types::Instance, owner: &str) -> Map<String, Value> {
    let id = i.instance_id.clone().unwrap_or_default();
    let arn = format!("arn:aws:ec2:{}:{owner}:instance/{id}", cx.region());
    attrs([
        ("id", id.into()),
        ("arn", arn.into()),
        (
            "public_ip",
            i.public_ip_address.clone().unwrap_or_default().into(),
        ),
        (
            "private_ip",
            i.private_ip_address.clone().unwrap_or_default().into(),
        ),
        (
            "instance_state",
            state_of(i)
                .map(|s| s.as_str().to_string())
                .unwrap_or_default()
                .into(),
        ),
    ])
}

async fn wait_state(
    cx: &Ctx,
    id: &str,
    want: InstanceStateName,
    budget: Duration,
) -> Result<Map<String, Value>, ProviderError> {
    wait_for(
        cx,
        &format!("instance {id} to be {}", want.as_str()),
        budget,
        || async {
            let Some((i, owner)) = describe(cx, id).await? else {
                return if want == InstanceStateName::Terminated {
                    Ok(Some(Map::new()))
                } else {
                    Ok(None)
                };
            };
            let state = state_of(&i);
            if state.as_ref() == Some(&want) {
                return Ok(Some(instance_attrs(cx, &i, &owner)));
            }
            if want == InstanceStateName::Running && gone(&i) {
                let reason = i.state_reason.and_then(|r| r.message).unwrap_or_default();
                return Err(ProviderError::refused(format!(
                    "instance {id} terminated while starting: {reason}"
                )));
            }
            Ok(None)
        },
    )
    .await
}

#[async_trait]
impl Provider for Instance {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let groups = str_list(r.props.get("vpc_security_group_ids"));
        let out = cx
            .ec2()
            .run_instances()
            .image_id(r.required_str("ami")?)
            .instance_type(InstanceType::from(r.required_str("instance_type")?))
            .min_count(1)
            .max_count(1)
            // The same token on every retry of this create, across runs: AWS
            // answers a repeat with the instance the first call launched.
            .set_client_token(Some(r.token.to_string()).filter(|t| !t.is_empty()))
            .set_security_group_ids((!groups.is_empty()).then_some(groups))
            .set_subnet_id(r.str("subnet_id").map(str::to_string))
            .set_key_name(r.str("key_name").map(str::to_string))
            .tag_specifications(tag_spec(ResourceType::Instance, r.tags_with_ownership(cx)))
            .tag_specifications(tag_spec(ResourceType::Volume, r.tags_with_ownership(cx)))
            .send()
            .await
            .map_err(aws)?;
        let id = out
            .instances
            .unwrap_or_default()
            .into_iter()
            .find_map(|i| i.instance_id)
            .ok_or_else(|| ProviderError::unexpected("RunInstances returned no instance"))?;
        let attrs = wait_state(
            cx,
            &id,
            InstanceStateName::Running,
            Duration::from_secs(600),
        )
        .await
        .map_err(|e| e.after_create(&id))?;
        Ok(Created {
            attrs,
            physical_id: id,
        })
    }

    async fn read(&self, cx: &Ctx, id: &str) -> ReadResult {
        let Some((i, owner)) = describe(cx, id).await? else {
            return Ok(None);
        };
        if gone(&i) {
            return Ok(None);
        }
        let mut p = props_of(&i);
        let (tags, tag_owner) = split_tags(
            i.tags
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| Some((t.key?, t.value?))),
        );
        p.insert("tags".into(), tags);
        Ok(Some(Observed {
            attrs: instance_attrs(cx, &i, &owner),
            props: p,
            owner: tag_owner,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let Update { id, r, changed, .. } = *u;
        if changed.contains(&"vpc_security_group_ids") {
            send!(cx
                .ec2()
                .modify_instance_attribute()
                .instance_id(id)
                .set_groups(Some(str_list(r.props.get("vpc_security_group_ids")))))?;
        }
        let (i, owner) = describe(cx, id)
            .await?
            .ok_or_else(|| ProviderError::unexpected(format!("instance {id} is gone")))?;
        Ok(instance_attrs(cx, &i, &owner))
    }

    async fn delete(&self, cx: &Ctx, id: &str, _props: &Props) -> Result<(), ProviderError> {
        let terminated = send!(cx.ec2().terminate_instances().instance_ids(id));
        if absent(terminated, NO_INSTANCE)?.is_none() {
            return Ok(());
        }
        // Its security group can only be deleted once the instance is gone.
        wait_state(
            cx,
            id,
            InstanceStateName::Terminated,
            Duration::from_secs(600),
        )
        .await?;
        Ok(())
    }

    async fn find(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Option<String>, ProviderError> {
        let id = super::id_tag(r.logical_id);
        let tags = [(super::TAG_STACK, cx.stack.as_str()), (super::TAG_ID, &id)];
        let found = live_instances_tagged(cx, &tags).await?;
        Ok(found.into_iter().find(|i| !r.replacing.contains(i)))
    }

    /// Ours by the ownership tags, or else the one live instance whose `Name`
    /// tag is the declared one (instances have no other name).
    async fn find_existing(
        &self,
        cx: &Ctx,
        r: &Resource<'_>,
    ) -> Result<Option<String>, ProviderError> {
        if let Some(id) = self.find(cx, r).await? {
            return Ok(Some(id));
        }
        let name = r
            .props
            .get("tags")
            .and_then(|t| t.get("Name"))
            .and_then(Value::as_str);
        let Some(name) = name.filter(|n| !crate::schema::is_unknown(&Value::from(*n))) else {
            return Ok(None);
        };
        let found = live_instances_tagged(cx, &[("Name", name)]).await?;
        Ok(if found.len() == 1 {
            found.into_iter().next()
        } else {
            None
        })
    }
}

/// The ids of instances not terminated (nor shutting down) with these tags.
async fn live_instances_tagged(
    cx: &Ctx,
    tags: &[(&str, &str)],
) -> Result<Vec<String>, ProviderError> {
    let mut req = cx.ec2().describe_instances().filters(
        Filter::builder()
            .name("instance-state-name")
            .set_values(Some(
                ["pending", "running", "stopping", "stopped"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ))
            .build(),
    );
    for (k, v) in tags {
        req = req.filters(
            Filter::builder()
                .name(format!("tag:{k}"))
                .values(*v)
                .build(),
        );
    }
    let out = send!(req)?;
    Ok(out
        .reservations
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r.instances.unwrap_or_default())
        .filter_map(|i| i.instance_id)
        .collect())
}

/// DescribeInstances' instance as the stack file names it (tags aside): its
/// groups by id.
fn props_of(i: &aws_sdk_ec2::types::Instance) -> Props {
    let text = |v: Option<&str>| Value::from(v.unwrap_or_default());
    let groups = i
        .security_groups
        .iter()
        .flatten()
        .filter_map(|g| g.group_id.clone());
    let mut p = Props::new();
    p.insert("ami".into(), text(i.image_id.as_deref()));
    p.insert(
        "instance_type".into(),
        text(i.instance_type.as_ref().map(|t| t.as_str())),
    );
    p.insert(
        "vpc_security_group_ids".into(),
        Value::from(groups.collect::<Vec<_>>()),
    );
    p.insert("subnet_id".into(), text(i.subnet_id.as_deref()));
    if let Some(k) = &i.key_name {
        p.insert("key_name".into(), Value::from(k.clone()));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_reads_its_groups_by_id_and_its_key_only_when_set() {
        use aws_sdk_ec2::types::{GroupIdentifier, Instance, InstanceType};
        let i = Instance::builder()
            .image_id("ami-1")
            .instance_type(InstanceType::T3Micro)
            .security_groups(
                GroupIdentifier::builder()
                    .group_id("sg-1")
                    .group_name("ssh")
                    .build(),
            )
            .subnet_id("subnet-1")
            .build();
        assert_eq!(
            Value::Object(props_of(&i)),
            serde_json::json!({"ami": "ami-1", "instance_type": "t3.micro",
                               "vpc_security_group_ids": ["sg-1"], "subnet_id": "subnet-1"})
        );
    }
}

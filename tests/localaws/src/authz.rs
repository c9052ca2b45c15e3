//! IAM authorization in front of moto, for one restricted identity.
//!
//! moto's own authorization mode checks actions against the resource `*`
//! for most services and ignores conditions, so a policy scoped to ARNs and
//! tags (what `stackctl permissions` writes) cannot be tried there. The proxy
//! decides instead, as AWS does: each call is authorized on every resource
//! the Service Authorization Reference lists for it (RunInstances on the
//! instance, image, subnet, network interface, volume and each group; tags on
//! create as ec2:CreateTags with `ec2:CreateAction`; a function's role as
//! iam:PassRole), with the condition keys the policy uses
//! (`aws:RequestTag/*`, `aws:ResourceTag/*` read from moto, `ec2:CreateAction`,
//! `iam:PassedToService`). An operation it does not know is denied, so a
//! call that the table misses fails a test instead of passing unchecked.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use serde_json::Value;

/// moto's account.
const ACCOUNT: &str = "123456789012";

/// The identity whose calls are authorized: its access key and policy.
pub struct Restricted {
    pub access_key: String,
    pub policy: Value,
}

/// One authorization AWS makes for a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub action: String,
    pub resource: String,
    pub context: Vec<(String, String)>,
    /// An EC2 id whose tags are the `aws:ResourceTag/*` keys.
    pub tagged: Option<String>,
}

impl Need {
    fn new(action: &str, resource: String) -> Need {
        Need {
            action: action.to_string(),
            resource,
            context: Vec::new(),
            tagged: None,
        }
    }

    fn with(mut self, context: &[(String, String)]) -> Need {
        self.context.extend(context.iter().cloned());
        self
    }
}

/// A call's parameters by name (list members and indexes dropped:
/// `ResourceId.1` and `AlarmNames.member.1` are `ResourceId`, `AlarmNames`),
/// and the raw pairs for what needs its indexes (tag specifications).
#[derive(Debug, Default)]
pub struct Params {
    named: BTreeMap<String, Vec<String>>,
    raw: Vec<(String, String)>,
    path: Vec<String>,
    /// The `<Key>`s of an XML body (S3's DeleteObjects).
    keys: Vec<String>,
}

impl Params {
    pub fn parse(path: &str, query: &str, body: &[u8]) -> Params {
        let mut p = Params {
            path: path
                .trim_matches('/')
                .split('/')
                .map(percent_decode)
                .collect(),
            ..Params::default()
        };
        if body.starts_with(b"<") {
            let xml = String::from_utf8_lossy(body);
            p.keys = xml
                .split("<Key>")
                .skip(1)
                .filter_map(|k| k.split("</Key>").next().map(str::to_string))
                .collect();
            return p;
        }
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
            for (k, v) in m {
                let values = match v {
                    Value::String(s) => vec![s],
                    Value::Array(a) => a
                        .into_iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                    _ => continue,
                };
                p.named.entry(k).or_default().extend(values);
            }
            return p;
        }
        let form = form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(body));
        for (k, v) in form {
            let base: Vec<&str> = k
                .split('.')
                .filter(|s| *s != "member" && s.parse::<u32>().is_err())
                .collect();
            p.named
                .entry(base.join("."))
                .or_default()
                .push(v.to_string());
            p.raw.push((k.into_owned(), v.into_owned()));
        }
        p
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.named.get(key)?.first().map(String::as_str)
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.named
            .get(key)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The tags of the request's tag specifications: `aws:RequestTag/K`.
    fn request_tags(&self) -> Vec<(String, String)> {
        let mut keys: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        for (k, v) in &self.raw {
            let Some(rest) = k.strip_prefix("TagSpecification.") else {
                continue;
            };
            let (slot, field) = match rest.rsplit_once('.') {
                Some((slot, "Key")) => (slot, 0),
                Some((slot, "Value")) => (slot, 1),
                _ => continue,
            };
            let entry = keys.entry(slot.to_string()).or_default();
            match field {
                0 => entry.0 = Some(v.clone()),
                _ => entry.1 = Some(v.clone()),
            }
        }
        keys.into_values()
            .filter_map(|(k, v)| Some((format!("aws:RequestTag/{}", k?), v.unwrap_or_default())))
            .collect()
    }

    /// The resource types the request's tag specifications tag.
    fn tagged_types(&self) -> Vec<&str> {
        let types = self
            .raw
            .iter()
            .filter(|(k, _)| k.starts_with("TagSpecification.") && k.ends_with(".ResourceType"));
        types.map(|(_, v)| v.as_str()).collect()
    }
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The access key a SigV4-signed request names.
pub fn access_key(headers: &hyper::HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    credential.split('/').next().map(str::to_string)
}

/// The region of the request's credential scope.
fn region(headers: &hyper::HeaderMap) -> String {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let scope = auth.split("Credential=").nth(1).unwrap_or_default();
    scope.split('/').nth(2).unwrap_or("us-east-1").to_string()
}

/// What AWS authorizes for `operation`: each action on each resource.
/// `None` for an operation this table does not know.
pub fn needs(service: &str, operation: &str, p: &Params, region: &str) -> Option<Vec<Need>> {
    let action = |prefix: &str| format!("{prefix}:{operation}");
    let on = |prefix: &str, resources: Vec<String>| -> Vec<Need> {
        resources
            .into_iter()
            .map(|r| Need::new(&action(prefix), r))
            .collect()
    };
    let any = || vec!["*".to_string()];
    Some(match service {
        "sts" if operation == "GetCallerIdentity" => Vec::new(),
        "logs" => on("logs", logs_resources(operation, p, region)?),
        "monitoring" => {
            let alarm = |n: &str| format!("arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:{n}");
            let resources = match operation {
                "PutMetricAlarm" => vec![alarm(p.one("AlarmName")?)],
                "DeleteAlarms" => p.all("AlarmNames").into_iter().map(alarm).collect(),
                "DescribeAlarms" => any(),
                "TagResource" | "UntagResource" | "ListTagsForResource" => {
                    vec![p.one("ResourceARN")?.to_string()]
                }
                _ => return None,
            };
            on("cloudwatch", resources)
        }
        "iam" => on("iam", vec![iam_resource(operation, p)?]),
        "lambda" => lambda_needs(operation, p, region)?,
        "sns" => {
            let resource = match operation {
                "CreateTopic" => format!("arn:aws:sns:{region}:{ACCOUNT}:{}", p.one("Name")?),
                "DeleteTopic"
                | "GetTopicAttributes"
                | "SetTopicAttributes"
                | "Subscribe"
                | "ListSubscriptionsByTopic" => p.one("TopicArn")?.to_string(),
                "TagResource" | "UntagResource" | "ListTagsForResource" => {
                    p.one("ResourceArn")?.to_string()
                }
                // A subscription's actions are authorized on its topic.
                "GetSubscriptionAttributes" | "SetSubscriptionAttributes" | "Unsubscribe" => {
                    p.one("SubscriptionArn")?.rsplit_once(':')?.0.to_string()
                }
                _ => return None,
            };
            on("sns", vec![resource])
        }
        "sqs" => {
            let name = match operation {
                "CreateQueue" | "GetQueueUrl" => p.one("QueueName")?.to_string(),
                "DeleteQueue" | "GetQueueAttributes" | "SetQueueAttributes" | "TagQueue"
                | "UntagQueue" | "ListQueueTags" => {
                    p.one("QueueUrl")?.rsplit('/').next()?.to_string()
                }
                _ => return None,
            };
            on(
                "sqs",
                vec![format!("arn:aws:sqs:{region}:{ACCOUNT}:{name}")],
            )
        }
        "tagging" if operation == "GetResources" => on("tag", any()),
        "ec2" => ec2_needs(operation, p, region)?,
        "s3" => s3_needs(operation, p)?,
        _ => return None,
    })
}

fn logs_resources(operation: &str, p: &Params, region: &str) -> Option<Vec<String>> {
    let group = |p: &Params| -> Option<String> {
        Some(format!(
            "arn:aws:logs:{region}:{ACCOUNT}:log-group:{}",
            p.one("logGroupName")?
        ))
    };
    Some(match operation {
        "CreateLogGroup"
        | "DeleteLogGroup"
        | "PutRetentionPolicy"
        | "DeleteRetentionPolicy"
        | "TagLogGroup"
        | "UntagLogGroup"
        | "ListTagsLogGroup"
        | "PutMetricFilter"
        | "DeleteMetricFilter" => vec![group(p)?],
        "CreateLogStream" | "DeleteLogStream" => vec![format!(
            "{}:log-stream:{}",
            group(p)?,
            p.one("logStreamName")?
        )],
        "DescribeLogGroups"
        | "DescribeLogStreams"
        | "DescribeMetricFilters"
        | "DescribeQueryDefinitions"
        | "PutQueryDefinition"
        | "DeleteQueryDefinition" => {
            vec!["*".to_string()]
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            vec![p.one("resourceArn")?.to_string()]
        }
        _ => return None,
    })
}

fn iam_resource(operation: &str, p: &Params) -> Option<String> {
    let role = |p: &Params| {
        Some(format!(
            "arn:aws:iam::{ACCOUNT}:role/{}",
            p.one("RoleName")?
        ))
    };
    Some(match operation {
        "CreateRole"
        | "DeleteRole"
        | "GetRole"
        | "TagRole"
        | "UntagRole"
        | "ListRoleTags"
        | "UpdateAssumeRolePolicy"
        | "UpdateRole"
        | "PutRolePermissionsBoundary"
        | "DeleteRolePermissionsBoundary"
        | "AttachRolePolicy"
        | "DetachRolePolicy"
        | "ListAttachedRolePolicies" => role(p)?,
        "CreatePolicy" => format!("arn:aws:iam::{ACCOUNT}:policy/{}", p.one("PolicyName")?),
        "CreatePolicyVersion"
        | "DeletePolicy"
        | "DeletePolicyVersion"
        | "ListPolicyVersions"
        | "GetPolicy"
        | "GetPolicyVersion"
        | "TagPolicy"
        | "UntagPolicy"
        | "ListPolicyTags" => p.one("PolicyArn")?.to_string(),
        _ => return None,
    })
}

/// Lambda's routes name the function in the path (a name or an ARN); a
/// function's role is passed to Lambda on create and on a change of role.
fn lambda_needs(operation: &str, p: &Params, region: &str) -> Option<Vec<Need>> {
    let function = |name: &str| match name.starts_with("arn:") {
        true => name.to_string(),
        false => format!("arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"),
    };
    let action = format!("lambda:{operation}");
    let resource = match operation {
        "CreateFunction" => function(p.one("FunctionName")?),
        "GetFunction"
        | "DeleteFunction"
        | "GetFunctionConfiguration"
        | "UpdateFunctionConfiguration"
        | "UpdateFunctionCode"
        | "AddPermission"
        | "GetPolicy"
        | "RemovePermission"
        | "GetFunctionConcurrency"
        | "PutFunctionConcurrency"
        | "DeleteFunctionConcurrency" => function(p.path.get(2)?),
        "TagResource" | "UntagResource" | "ListTags" => p.path.get(2)?.clone(),
        _ => return None,
    };
    let mut out = vec![Need::new(&action, resource)];
    if let Some(role) = p.one("Role") {
        let passed = [(
            "iam:PassedToService".to_string(),
            "lambda.amazonaws.com".to_string(),
        )];
        out.push(Need::new("iam:PassRole", role.to_string()).with(&passed));
    }
    Some(out)
}

fn ec2_needs(operation: &str, p: &Params, region: &str) -> Option<Vec<Need>> {
    let arn = |kind: &str, id: &str| format!("arn:aws:ec2:{region}:{ACCOUNT}:{kind}/{id}");
    let of_id = |id: &str| match id.split('-').next() {
        Some("i") => arn("instance", id),
        Some("sg") => arn("security-group", id),
        _ => arn("resource", id),
    };
    let action = format!("ec2:{operation}");
    let existing = |ids: Vec<&str>| -> Vec<Need> {
        ids.into_iter()
            .map(|id| Need {
                tagged: Some(id.to_string()),
                ..Need::new(&action, of_id(id))
            })
            .collect()
    };
    let requested = p.request_tags();
    let creating = |made: Vec<String>, used: Vec<String>, kinds: &[&str]| -> Vec<Need> {
        let mut out: Vec<Need> = made
            .iter()
            .map(|r| Need::new(&action, r.clone()).with(&requested))
            .collect();
        out.extend(used.into_iter().map(|r| Need::new(&action, r)));
        // Tags on create are authorized as CreateTags on what is tagged.
        let create_action = [("ec2:CreateAction".to_string(), operation.to_string())];
        for kind in p.tagged_types().into_iter().filter(|k| kinds.contains(k)) {
            let tags = Need::new("ec2:CreateTags", arn(kind, "*"));
            out.push(tags.with(&create_action).with(&requested));
        }
        out
    };
    Some(match operation {
        "DescribeInstances"
        | "DescribeSecurityGroups"
        | "DescribeImages"
        | "DescribeTags"
        | "DescribeVpcs"
        | "DescribeSubnets" => vec![Need::new(&action, "*".to_string())],
        "RunInstances" => {
            let image = format!("arn:aws:ec2:{region}::image/{}", p.one("ImageId")?);
            let mut used = vec![
                image,
                arn("subnet", p.one("SubnetId").unwrap_or("*")),
                arn("network-interface", "*"),
                arn("volume", "*"),
            ];
            let groups = p.all("SecurityGroupId");
            used.extend(groups.iter().map(|g| arn("security-group", g)));
            if groups.is_empty() {
                used.push(arn("security-group", "*"));
            }
            if let Some(key) = p.one("KeyName") {
                used.push(arn("key-pair", key));
            }
            creating(vec![arn("instance", "*")], used, &["instance", "volume"])
        }
        "CreateSecurityGroup" => creating(
            vec![arn("security-group", "*")],
            vec![arn("vpc", p.one("VpcId").unwrap_or("*"))],
            &["security-group"],
        ),
        "CreateTags" | "DeleteTags" => existing(p.all("ResourceId")),
        "TerminateInstances" => existing(p.all("InstanceId")),
        "ModifyInstanceAttribute" => {
            let mut out = existing(p.all("InstanceId"));
            out.extend(existing(p.all("GroupId")));
            out
        }
        "AuthorizeSecurityGroupEgress"
        | "AuthorizeSecurityGroupIngress"
        | "RevokeSecurityGroupEgress"
        | "RevokeSecurityGroupIngress"
        | "DeleteSecurityGroup" => existing(p.all("GroupId")),
        _ => return None,
    })
}

/// S3 authorizes object calls on the object, listings on the bucket, and a
/// multi-object delete as s3:DeleteObject on each key.
fn s3_needs(operation: &str, p: &Params) -> Option<Vec<Need>> {
    let bucket = format!("arn:aws:s3:::{}", p.path.first()?);
    let object = format!("arn:aws:s3:::{}", p.path.join("/"));
    let one = |action: &str, resource: &str| vec![Need::new(action, resource.to_string())];
    Some(match operation {
        "GetObject" | "HeadObject" => one("s3:GetObject", &object),
        "PutObject" => one("s3:PutObject", &object),
        "DeleteObject" => one("s3:DeleteObject", &object),
        "DeleteObjects" => p
            .keys
            .iter()
            .map(|k| Need::new("s3:DeleteObject", format!("{bucket}/{k}")))
            .collect(),
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => one("s3:ListBucket", &bucket),
        "ListObjectVersions" => one("s3:ListBucketVersions", &bucket),
        "GetBucketVersioning" | "PutBucketVersioning" | "CreateBucket" | "DeleteBucket" => {
            one(&format!("s3:{operation}"), &bucket)
        }
        _ => return None,
    })
}

/// IAM's wildcard match: `*` any run of characters, `?` any one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether every condition of a statement holds in `context` (operators the
/// policies use; any other fails closed).
fn conditions_hold(conditions: &Value, context: &[(String, String)]) -> bool {
    let Some(ops) = conditions.as_object() else {
        return true;
    };
    ops.iter().all(|(op, keys)| {
        let Some(keys) = keys.as_object() else {
            return false;
        };
        keys.iter().all(|(key, wanted)| {
            let have: Vec<&str> = context
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
                .collect();
            let wanted = strings(wanted);
            have.iter().any(|h| {
                wanted.iter().any(|w| match op.as_str() {
                    "StringEquals" | "ArnEquals" => h == w,
                    "StringLike" | "ArnLike" => glob(w, h),
                    _ => false,
                })
            })
        })
    })
}

/// IAM's evaluation for an identity policy alone: an explicit Deny wins,
/// then an Allow, else the implicit deny.
pub fn allows(policy: &Value, need: &Need) -> bool {
    let statements = match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        _ => Vec::new(),
    };
    let mut allowed = false;
    for s in &statements {
        let action = strings(&s["Action"])
            .iter()
            .any(|a| glob(&a.to_lowercase(), &need.action.to_lowercase()));
        let resource = strings(&s["Resource"])
            .iter()
            .any(|r| glob(r, &need.resource));
        if !(action && resource && conditions_hold(&s["Condition"], &need.context)) {
            continue;
        }
        if s["Effect"] == "Deny" {
            return false;
        }
        allowed = true;
    }
    allowed
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// An EC2 resource's tags as moto has them, as `aws:ResourceTag/K` keys.
async fn ec2_tags(
    client: &HttpClient,
    upstream: &str,
    headers: &hyper::HeaderMap,
    id: &str,
) -> Vec<(String, String)> {
    let body = format!(
        "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id&Filter.1.Value.1={id}"
    );
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("{upstream}/"))
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(auth) = headers.get("authorization") {
        req = req.header("authorization", auth);
    }
    let Ok(req) = req.body(Full::new(Bytes::from(body))) else {
        return Vec::new();
    };
    let Ok(resp) = client.request(req).await else {
        return Vec::new();
    };
    let Ok(bytes) = resp.into_body().collect().await else {
        return Vec::new();
    };
    let xml = String::from_utf8_lossy(&bytes.to_bytes()).into_owned();
    let field = |item: &str, name: &str| -> Option<String> {
        let start = item.find(&format!("<{name}>"))? + name.len() + 2;
        let end = item[start..].find(&format!("</{name}>"))? + start;
        Some(item[start..end].to_string())
    };
    xml.split("<item>")
        .skip(1)
        .filter_map(|item| {
            Some((
                format!("aws:ResourceTag/{}", field(item, "key")?),
                field(item, "value").unwrap_or_default(),
            ))
        })
        .collect()
}

/// AWS's refusal of a call: the first authorization that fails, in the
/// service's protocol. `None` when the call is allowed, or not the
/// restricted identity's.
#[allow(clippy::too_many_arguments)]
pub async fn refusal(
    restricted: Option<&Restricted>,
    client: &HttpClient,
    upstream: &str,
    headers: &hyper::HeaderMap,
    service: &str,
    operation: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Option<(u16, Vec<(String, String)>, String)> {
    let restricted = restricted?;
    if access_key(headers).as_deref() != Some(restricted.access_key.as_str()) {
        return None;
    }
    let params = Params::parse(path, query, body);
    let region = region(headers);
    let Some(needs) = needs(service, operation, &params, &region) else {
        return Some(denied(
            service,
            &format!("{service}:{operation}"),
            "(unknown to the test proxy)",
        ));
    };
    for mut need in needs {
        if let Some(id) = &need.tagged {
            let tags = ec2_tags(client, upstream, headers, id).await;
            need.context.extend(tags);
        }
        if !allows(&restricted.policy, &need) {
            return Some(denied(service, &need.action, &need.resource));
        }
    }
    None
}

/// The AccessDenied answer each protocol carries.
fn denied(service: &str, action: &str, resource: &str) -> (u16, Vec<(String, String)>, String) {
    let message = format!(
        "User: arn:aws:iam::{ACCOUNT}:user/restricted is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action"
    );
    let (status, code) = match service {
        "ec2" => (403, "UnauthorizedOperation"),
        "logs" => (400, "AccessDeniedException"),
        "lambda" => (403, "AccessDeniedException"),
        _ => (403, "AccessDenied"),
    };
    crate::protocol::error(service, status, code, &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards_match_as_iam_matches_them() {
        assert!(glob(
            "arn:aws:sqs:us-east-2:*:q1",
            "arn:aws:sqs:us-east-2:123456789012:q1"
        ));
        assert!(glob(
            "arn:aws:ec2:us-east-2:*:image/*",
            "arn:aws:ec2:us-east-2::image/ami-1"
        ));
        assert!(!glob(
            "arn:aws:sqs:us-east-2:*:q1",
            "arn:aws:sqs:us-east-2:1:q12"
        ));
        assert!(glob("*", ""));
    }

    #[test]
    fn run_instances_is_authorized_on_everything_it_uses_and_tags() {
        let body = "Action=RunInstances&ImageId=ami-1&SecurityGroupId.1=sg-9\
                    &TagSpecification.1.ResourceType=instance\
                    &TagSpecification.1.Tag.1.Key=stackctl%3Astack&TagSpecification.1.Tag.1.Value=s";
        let p = Params::parse("/", "", body.as_bytes());
        let needs = needs("ec2", "RunInstances", &p, "us-east-2").unwrap();
        let resources: Vec<&str> = needs.iter().map(|n| n.resource.as_str()).collect();
        assert!(resources.contains(&"arn:aws:ec2:us-east-2::image/ami-1"));
        assert!(resources.contains(&"arn:aws:ec2:us-east-2:123456789012:security-group/sg-9"));
        assert!(resources.contains(&"arn:aws:ec2:us-east-2:123456789012:subnet/*"));
        let tags = needs.iter().find(|n| n.action == "ec2:CreateTags").unwrap();
        assert!(tags
            .context
            .contains(&("ec2:CreateAction".into(), "RunInstances".into())));
        let instance = &needs[0];
        assert!(instance
            .context
            .contains(&("aws:RequestTag/stackctl:stack".into(), "s".into())));
    }

    #[test]
    fn a_condition_on_a_key_the_request_lacks_fails() {
        let policy = json!({"Statement": [{"Effect": "Allow", "Action": "ec2:TerminateInstances",
            "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceTag/stackctl:stack": "s"}}}]});
        let need = Need::new(
            "ec2:TerminateInstances",
            "arn:aws:ec2:r:a:instance/i-1".into(),
        );
        assert!(!allows(&policy, &need));
        let tagged = need.with(&[("aws:ResourceTag/stackctl:stack".into(), "s".into())]);
        assert!(allows(&policy, &tagged));
    }

    #[test]
    fn an_explicit_deny_wins() {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "sqs:DeleteQueue", "Resource": "*"}]});
        assert!(!allows(
            &policy,
            &Need::new("sqs:DeleteQueue", "arn:aws:sqs:r:a:q".into())
        ));
        assert!(allows(
            &policy,
            &Need::new("sqs:CreateQueue", "arn:aws:sqs:r:a:q".into())
        ));
    }
}

//! Resource types: one module per type, each a schema plus the AWS calls that
//! create, read, update and delete it. `REGISTRY` is the only list of them.

/// Sends an SDK request and maps its error to a `ProviderError` that says
/// whether the call may have reached AWS (`aws`). Defined before the type
/// modules so that each of them can use it.
macro_rules! send {
    ($request:expr) => {
        $request.send().await.map_err($crate::providers::aws)
    };
}

mod ami;
mod checked;
mod cloudwatch_log_group;
mod cloudwatch_log_metric_filter;
mod cloudwatch_log_stream;
mod cloudwatch_metric_alarm;
mod cloudwatch_query_definition;
mod iam_policy;
mod iam_role;
mod iam_role_policy_attachment;
mod instance;
mod lambda_function;
mod lambda_permission;
pub mod reach;
mod security_group;
mod sns_topic;
mod sns_topic_subscription;
mod sqs_queue;
mod sqs_queue_policy;
pub mod tagging;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{Map, Value};

use tokio::sync::OnceCell;

use crate::schema::{fill_format, is_unknown, Prop, Props, Schema, Type};
use checked::Checked;

/// Every resource type stackctl knows. Adding a type means adding its module and
/// one line here.
static REGISTRY: &[&dyn Provider] = &[
    &Checked(&ami::Ami),
    &Checked(&cloudwatch_log_group::LogGroup),
    &Checked(&cloudwatch_log_metric_filter::MetricFilter),
    &Checked(&cloudwatch_log_stream::LogStream),
    &Checked(&cloudwatch_metric_alarm::MetricAlarm),
    &Checked(&cloudwatch_query_definition::QueryDefinition),
    &Checked(&iam_policy::IamPolicy),
    &Checked(&iam_role::IamRole),
    &Checked(&iam_role_policy_attachment::RolePolicyAttachment),
    &Checked(&instance::Instance),
    &Checked(&lambda_function::LambdaFunction),
    &Checked(&lambda_permission::LambdaPermission),
    &Checked(&security_group::SecurityGroup),
    &Checked(&sns_topic::SnsTopic),
    &Checked(&sns_topic_subscription::SnsTopicSubscription),
    &Checked(&sqs_queue::SqsQueue),
    &Checked(&sqs_queue_policy::SqsQueuePolicy),
];

pub fn lookup(type_name: &str) -> Option<&'static dyn Provider> {
    REGISTRY
        .iter()
        .copied()
        .find(|p| p.schema().type_name == type_name)
}

pub fn all() -> impl Iterator<Item = &'static dyn Provider> {
    REGISTRY.iter().copied()
}

/// The longest one AWS operation may take, all its retries included: 180 s,
/// or STACKCTL_OPERATION_TIMEOUT seconds.
pub fn operation_deadline() -> Duration {
    std::env::var("STACKCTL_OPERATION_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(Duration::from_secs(180), Duration::from_secs)
}

/// Tag keys stackctl puts on everything it creates, so that a run after a crash
/// can find what an earlier run made.
pub const TAG_STACK: &str = "stackctl:stack";
pub const TAG_ID: &str = "stackctl:id";

/// What the engine hands a provider for one resource.
pub struct Resource<'a> {
    pub logical_id: &'a str,
    /// Resolved properties with schema defaults filled in; no unknowns.
    pub props: &'a Props,
    /// The idempotency token of this create (the same on every retry of it,
    /// across runs), for APIs that take one and for generated names.
    pub token: &'a str,
    /// The objects a create-before-destroy replacement replaces. They carry
    /// the same ownership tags, and are never what this create made.
    pub replacing: &'a [String],
}

impl Resource<'_> {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.props.get(name).and_then(Value::as_str)
    }

    pub fn required_str(&self, name: &str) -> Result<&str, ProviderError> {
        self.str(name)
            .ok_or_else(|| ProviderError::refused(format!("property `{name}` is missing")))
    }

    pub fn i64(&self, name: &str) -> Option<i64> {
        self.props.get(name).and_then(Value::as_i64)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.props.get(name).and_then(Value::as_bool)
    }

    /// The user's tags plus stackctl's ownership tags.
    pub fn tags_with_ownership(&self, cx: &Ctx) -> Vec<(String, String)> {
        let mut tags = string_map(self.props.get("tags"));
        tags.retain(|(k, _)| !k.starts_with("stackctl:"));
        tags.push((TAG_STACK.to_string(), cx.stack.clone()));
        tags.push((TAG_ID.to_string(), id_tag(self.logical_id)));
        tags
    }
}

/// The `stackctl:id` tag of an address: tag values take no quotes or
/// brackets (IAM's allow letters, digits, spaces and `_.:/=+-@`), so the
/// instance `web["a"]` is tagged `web.a`, and `module.m["a"].log` is tagged
/// `module.m.a.log`.
pub fn id_tag(address: &str) -> String {
    address.replace("[\"", ".").replace("\"]", "")
}

/// Which stack and logical id a resource's ownership tags name (the id as
/// tagged: see `id_tag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub stack: String,
    pub id: String,
}

/// A resource as AWS reports it, in schema property names.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub props: Props,
    pub attrs: Map<String, Value>,
    /// For taggable types: the stack and logical id its ownership tags name,
    /// if it has them.
    pub owner: Option<Owner>,
}

/// The two fields of a composite id as the schema's `id_format` writes it
/// (`{log_group_name}:{name}`, `{role}/{policy_arn}`), split at the first
/// separator: AWS's rules keep it out of the first field's values.
pub fn id_parts<'a>(schema: &Schema, id: &'a str) -> Result<(&'a str, &'a str), ProviderError> {
    let format = schema.id_format.unwrap_or_default();
    let sep = format
        .split_once('}')
        .and_then(|(_, rest)| rest.split_once('{'))
        .map_or("", |(sep, _)| sep);
    id.split_once(sep)
        .filter(|_| !sep.is_empty())
        .ok_or_else(|| {
            let what = schema.type_name;
            ProviderError::refused(format!("malformed {what} id `{id}`: expected {format}"))
        })
}

/// Tags as AWS reports them, split into the user's (as the `tags` property,
/// stackctl's own hidden from diffs) and the owner they name.
pub fn split_tags<I: IntoIterator<Item = (String, String)>>(tags: I) -> (Value, Option<Owner>) {
    let tags: Vec<(String, String)> = tags.into_iter().collect();
    let get = |k: &str| tags.iter().find(|(tk, _)| tk == k).map(|(_, v)| v.clone());
    let owner = get(TAG_STACK)
        .zip(get(TAG_ID))
        .map(|(stack, id)| Owner { stack, id });
    (user_tags(tags), owner)
}

/// A resource's attributes, by name.
pub type Attrs = Map<String, Value>;

/// What a read finds: `None` when the resource does not exist.
pub type ReadResult = Result<Option<Observed>, ProviderError>;

/// What a batched read finds, by physical id.
pub type BatchResult = Result<HashMap<String, Option<Observed>>, ProviderError>;

/// An in-place change: the object `id`, its recorded properties `old`, the
/// properties it is to have and the names of those that differ.
#[derive(Clone, Copy)]
pub struct Update<'a> {
    pub id: &'a str,
    pub old: &'a Props,
    pub r: &'a Resource<'a>,
    pub changed: &'a [&'a str],
}

/// Changes a resource in place: the provider sends what its type needs,
/// then the tags are synced by the schema's tagging family, for every type
/// alike.
pub async fn update(p: &dyn Provider, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
    #[cfg(test)]
    if cx.model.is_some() {
        return p.update(cx, u).await; // the model keeps tags with the rest
    }
    let (tags, rest): (Vec<&str>, Vec<&str>) = u.changed.iter().partition(|c| **c == "tags");
    let attrs = p
        .update(
            cx,
            &Update {
                changed: &rest,
                ..*u
            },
        )
        .await?;
    if !tags.is_empty() {
        let family = p.schema().tagging;
        let target = match family.by_arn() {
            true => attrs.get("arn").and_then(Value::as_str).unwrap_or(u.id),
            false => u.id,
        };
        let (old, new) = (u.old.get("tags"), u.r.props.get("tags"));
        tagging::sync(family, cx, target, old, new).await?;
    }
    Ok(attrs)
}

/// A resource that now exists.
#[derive(Debug, Clone)]
pub struct Created {
    pub physical_id: String,
    pub attrs: Map<String, Value>,
}

impl Created {
    pub fn new(physical_id: impl Into<String>, attrs: Attrs) -> Created {
        let physical_id = physical_id.into();
        Created { physical_id, attrs }
    }
}

/// A resource type's schema, declared once beside it: `impl Typed for
/// LogGroup { const SCHEMA: &'static Schema = &SCHEMA; }`.
pub trait Typed {
    const SCHEMA: &'static Schema;
}

/// The schema of a provider, through which the engine reaches it.
pub trait HasSchema {
    fn schema(&self) -> &'static Schema;
}

impl<T: Typed> HasSchema for T {
    fn schema(&self) -> &'static Schema {
        T::SCHEMA
    }
}

#[async_trait]
pub trait Provider: HasSchema + Send + Sync {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError>;

    /// `Ok(None)` when the resource no longer exists.
    async fn read(&self, cx: &Ctx, physical_id: &str) -> ReadResult;

    /// `read` of a resource the state records with `attrs`: a read whose
    /// second call needs an id from its first may send it with the recorded id
    /// at once, and keep its answer only if the first call confirms the id.
    async fn read_recorded(&self, cx: &Ctx, physical_id: &str, _attrs: &Attrs) -> ReadResult {
        self.read(cx, physical_id).await
    }

    /// Changes the properties named in `u.changed` in place (never `tags`:
    /// [`update`] syncs those through the type's tagging family); returns the
    /// attributes.
    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError>;

    /// Succeeds when the resource is already gone.
    async fn delete(&self, cx: &Ctx, physical_id: &str, props: &Props)
        -> Result<(), ProviderError>;

    /// Looks up, by its identity (name, or what AWS keys it by), the resource a
    /// create with these properties would make or have made, whoever made it.
    /// A run after a crash adopts what it finds if it is provably this
    /// stack's; a create refuses to take over what is not. Types whose schema
    /// has an `id_format` need not implement it: the id is made, then read.
    async fn find(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Option<String>, ProviderError> {
        let Some(id) = formatted_id(self.schema(), cx, r).await? else {
            return Err(ProviderError::refused(format!(
                "`{}` has no id_format: its provider must implement find",
                self.schema().type_name
            )));
        };
        Ok(self.read(cx, &id).await?.map(|_| id))
    }

    /// Whether the object with this id exists, in one call, for the look
    /// before a create (which usually finds nothing): types whose read sends
    /// more than one call (its tags beside) answer it; `None` reads instead.
    async fn exists(&self, _cx: &Ctx, _id: &str) -> Result<Option<bool>, ProviderError> {
        Ok(None)
    }

    /// For types whose schema says `batch_read`: reads many at once
    /// (DescribeAlarms takes 100 names). The map holds `None` for those that
    /// no longer exist.
    async fn read_many(&self, _cx: &Ctx, _ids: &[String]) -> BatchResult {
        Err(ProviderError::refused(format!(
            "`{}` is read one at a time",
            self.schema().type_name
        )))
    }

    /// For `stackctl import --all`: the resource that the declaration names,
    /// made by anyone (no create token to go by). Only an unambiguous match.
    async fn find_existing(
        &self,
        cx: &Ctx,
        r: &Resource<'_>,
    ) -> Result<Option<String>, ProviderError> {
        self.find(cx, r).await
    }

    /// Adds properties computed offline from the others (a code hash from a
    /// file). An error names what is wrong with the property it returns.
    fn derive(
        &self,
        _props: &mut Props,
        _stack_dir: &std::path::Path,
    ) -> Result<(), (&'static str, String)> {
        Ok(())
    }

    /// For data sources: looks the thing up and returns its attributes.
    async fn read_data(
        &self,
        _cx: &Ctx,
        _props: &Props,
    ) -> Result<Map<String, Value>, ProviderError> {
        Err(ProviderError::refused(format!(
            "`{}` is not a data source",
            self.schema().type_name
        )))
    }
}

/// What a lookup by identity found.
pub enum Found {
    /// This stack's: its ownership tags name this stack and logical id, or
    /// (for types without tags) an intent of this state says a create of it
    /// was sent.
    Ours(String, Observed),
    /// Something of that identity that this stack did not make.
    Foreign(String),
    Absent,
}

/// Tags an existing resource with this stack's ownership tags (its other tags
/// untouched): the one change `stackctl import` makes.
pub async fn claim(
    p: &dyn Provider,
    cx: &Ctx,
    physical_id: &str,
    logical_id: &str,
    observed: &Observed,
) -> Result<(), ProviderError> {
    let tags = observed
        .props
        .get("tags")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut owned = tags.clone();
    if let Value::Object(m) = &mut owned {
        m.insert(TAG_STACK.into(), Value::from(cx.stack.clone()));
        m.insert(TAG_ID.into(), Value::from(id_tag(logical_id)));
    }
    let old: Props = [("tags".to_string(), tags)].into_iter().collect();
    let mut props = observed.props.clone();
    props.insert("tags".into(), owned);
    let r = Resource {
        logical_id,
        props: &props,
        token: "",
        replacing: &[],
    };
    let u = Update {
        id: physical_id,
        old: &old,
        r: &r,
        changed: &["tags"],
    };
    update(p, cx, &u).await.map(drop)
}

/// The physical id the schema's `id_format` makes of these properties;
/// `None` for types without one.
async fn formatted_id(
    schema: &Schema,
    cx: &Ctx,
    r: &Resource<'_>,
) -> Result<Option<String>, ProviderError> {
    let Some(format) = schema.id_format else {
        return Ok(None);
    };
    let account = match format.contains("{account}") {
        true => Some(cx.account_id().await?),
        false => None,
    };
    let mut missing = "";
    let id = fill_format(format, |field| match field {
        "region" => Some(cx.region()),
        "account" => account.clone(),
        _ => r.str(field).map(str::to_string).or_else(|| {
            missing = schema.prop(field).map_or("", |p| p.name);
            None
        }),
    });
    id.map(Some)
        .ok_or_else(|| ProviderError::refused(format!("property `{missing}` is missing")))
}

/// Looks the resource up by its identity and decides whose it is.
pub async fn locate(
    p: &dyn Provider,
    cx: &Ctx,
    r: &Resource<'_>,
    intent: bool,
) -> Result<Found, ProviderError> {
    let found = match formatted_id(p.schema(), cx, r).await? {
        Some(id) if p.exists(cx, &id).await? == Some(false) => None,
        Some(id) => Some(id),
        None => p.find(cx, r).await?,
    };
    let Some(pid) = found.filter(|pid| !r.replacing.contains(pid)) else {
        return Ok(Found::Absent);
    };
    let Some(observed) = p.read(cx, &pid).await? else {
        return Ok(Found::Absent);
    };
    let ours = if p.schema().taggable() {
        observed
            .owner
            .as_ref()
            .is_some_and(|o| o.stack == cx.stack && o.id == id_tag(r.logical_id))
    } else {
        intent
    };
    Ok(if ours {
        Found::Ours(pid, observed)
    } else {
        Found::Foreign(pid)
    })
}

/// The standard configuration chain, with the run's region, retries and
/// deadlines.
fn loader(stack_region: Option<&str>) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = effective_region(stack_region) {
        loader = loader.region(aws_config::Region::new(region));
    }
    if std::env::var_os("AWS_MAX_ATTEMPTS").is_none()
        && std::env::var_os("AWS_RETRY_MODE").is_none()
    {
        loader = loader.retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(6)
                .with_max_backoff(Duration::from_secs(20)),
        );
    }
    // Every call has a deadline, retries included: an endpoint that stops
    // answering fails the run in minutes instead of holding the lock.
    loader.timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(60).min(operation_deadline()))
            .operation_timeout(operation_deadline())
            .build(),
    )
}

/// AWS clients for one run, built from the standard configuration chain.
pub struct Ctx {
    pub sdk: SdkConfig,
    pub stack: String,
    /// Where progress goes (builds, long waits).
    pub events: std::sync::Arc<dyn crate::events::Events>,
    /// Where relative paths in the stack file (code zips, crates) start.
    pub stack_dir: std::path::PathBuf,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    iam: aws_sdk_iam::Client,
    ec2: aws_sdk_ec2::Client,
    lambda: aws_sdk_lambda::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    tagging: aws_sdk_resourcegroupstagging::Client,
    sts: aws_sdk_sts::Client,
    /// Every call's ledger, and the gate it asks before it is sent.
    calls: reach::Interceptor,
    account_id: OnceCell<String>,
    /// The account the state records, used for ARNs and `${stack.account_id}`
    /// before STS answers; the plan is refused if STS then names another.
    presumed_account: std::sync::OnceLock<String>,
    /// Tags read in bulk (Resource Groups Tagging API) by ARN, for reads
    /// to use instead of one tag call per resource.
    known_tags: std::sync::RwLock<HashMap<String, Vec<(String, String)>>>,
    /// The environment and the account it names: STS naming another refuses
    /// the run.
    required_account: Option<(String, String)>,
    /// The deterministic simulation's cloud (src/dst/): its providers
    /// serve every call in place of AWS's.
    #[cfg(test)]
    pub model: Option<std::sync::Arc<crate::dst::Cloud>>,
}

impl Ctx {
    /// `stack_region` applies only when the environment names no region.
    /// An environment's `assume_role` is assumed with the chain's
    /// credentials, and its `account` is the only one the run may reach.
    pub async fn new(
        stack: &str,
        stack_region: Option<&str>,
        stack_dir: &std::path::Path,
        env: Option<&crate::config::Environment>,
    ) -> Ctx {
        let mut sdk = loader(stack_region).load().await;
        if let Some(role) = env.and_then(|e| e.assume_role.as_deref()) {
            let session: String = format!("stackctl-{stack}").chars().take(64).collect();
            let assumed = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name(session)
                .configure(&sdk)
                .build()
                .await;
            sdk = loader(stack_region)
                .credentials_provider(assumed)
                .load()
                .await;
        }
        let mut cx = Ctx::with_config(sdk, stack, stack_dir);
        if let Some(env) = env {
            cx.required_account = env.account.clone().map(|a| (env.name.clone(), a));
        }
        cx
    }

    /// A context over an SDK configuration built elsewhere (tests build one
    /// for the local endpoint).
    pub fn with_config(sdk: SdkConfig, stack: &str, stack_dir: &std::path::Path) -> Ctx {
        // Every client keeps a ledger of each call's attempts (reach.rs).
        let calls = reach::Interceptor::default();
        macro_rules! client {
            ($sdk_crate:ident) => {
                $sdk_crate::Client::from_conf(
                    $sdk_crate::config::Builder::from(&sdk)
                        .interceptor(calls.clone())
                        .build(),
                )
            };
        }
        Ctx {
            sns: client!(aws_sdk_sns),
            sqs: client!(aws_sdk_sqs),
            iam: client!(aws_sdk_iam),
            ec2: client!(aws_sdk_ec2),
            lambda: client!(aws_sdk_lambda),
            logs: client!(aws_sdk_cloudwatchlogs),
            cloudwatch: client!(aws_sdk_cloudwatch),
            tagging: client!(aws_sdk_resourcegroupstagging),
            sts: client!(aws_sdk_sts),
            calls,
            known_tags: Default::default(),
            sdk,
            events: crate::events::silent(),
            stack: stack.to_string(),
            stack_dir: stack_dir.to_path_buf(),
            account_id: OnceCell::new(),
            presumed_account: Default::default(),
            required_account: None,
            #[cfg(test)]
            model: None,
        }
    }

    /// The provider of `type_name` this context reaches AWS through: the
    /// registry's, or in the deterministic simulation the model cloud's.
    pub fn provider(&self, type_name: &str) -> Option<&'static dyn Provider> {
        #[cfg(test)]
        if self.model.is_some() {
            return crate::dst::provider(type_name);
        }
        lookup(type_name)
    }

    /// A context for the simulation's cloud: its account known (no STS).
    #[cfg(test)]
    pub fn for_model(
        cloud: std::sync::Arc<crate::dst::Cloud>,
        stack: &str,
        dir: &std::path::Path,
    ) -> Ctx {
        let sdk = SdkConfig::builder()
            .region(aws_config::Region::new(crate::dst::REGION))
            .behavior_version(aws_config::BehaviorVersion::latest())
            // The model's calls never reach HTTP; without this each client
            // would load the TLS roots (most of a seed's time, in debug).
            .http_client(crate::dst::no_network())
            .build();
        let mut cx = Ctx::with_config(sdk, stack, dir);
        let _ = cx.account_id.set(crate::dst::ACCOUNT.to_string());
        cx.model = Some(cloud);
        cx
    }

    /// Every call of this context asks `gate` first, and fails unsent when
    /// it says no; `None` lets every call through.
    pub fn set_gate(&self, gate: Option<reach::Gate>) {
        self.calls.set_gate(gate);
    }

    /// What the gate says of a call about to be sent (the simulation's
    /// calls ask it as the interceptor's do).
    #[cfg(test)]
    pub fn gate_allows(&self) -> Result<(), String> {
        self.calls.gate_allows().map_err(|e| e.to_string())
    }

    pub fn sns(&self) -> &aws_sdk_sns::Client {
        &self.sns
    }

    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.sqs
    }

    pub fn iam(&self) -> &aws_sdk_iam::Client {
        &self.iam
    }

    pub fn ec2(&self) -> &aws_sdk_ec2::Client {
        &self.ec2
    }

    pub fn lambda(&self) -> &aws_sdk_lambda::Client {
        &self.lambda
    }

    pub fn logs(&self) -> &aws_sdk_cloudwatchlogs::Client {
        &self.logs
    }

    pub fn cloudwatch(&self) -> &aws_sdk_cloudwatch::Client {
        &self.cloudwatch
    }

    /// The tags of `arn`, if the bulk read has them.
    pub fn known_tags(&self, arn: &str) -> Option<Vec<(String, String)>> {
        let known = self.known_tags.read().unwrap_or_else(|e| e.into_inner());
        known.get(arn.trim_end_matches(":*")).cloned()
    }

    /// Whether a bulk read of tags is in use (reads then look there first
    /// instead of asking for tags alongside).
    pub fn has_known_tags(&self) -> bool {
        !self
            .known_tags
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// The ARN partition of this run's region.
    pub fn partition(&self) -> &'static str {
        let region = self.region();
        if region.starts_with("cn-") {
            "aws-cn"
        } else if region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    /// Makes these tags (by ARN) what reads use instead of a tag call.
    pub fn trust_tags(&self, tags: HashMap<String, Vec<(String, String)>>) {
        *self.known_tags.write().unwrap_or_else(|e| e.into_inner()) = tags;
    }

    /// Every resource of `services` tagged as this stack's, with its tags: a
    /// paginated GetResources per service, the services in parallel.
    pub async fn tagged_resources(
        &self,
        services: &[&str],
    ) -> Result<HashMap<String, Vec<(String, String)>>, ProviderError> {
        let filter = aws_sdk_resourcegroupstagging::types::TagFilter::builder()
            .key(TAG_STACK)
            .values(&self.stack)
            .build();
        let pages = services.iter().map(|service| {
            let req = self
                .tagging
                .get_resources()
                .tag_filters(filter.clone())
                .resource_type_filters(*service)
                .resources_per_page(100);
            async move {
                let mut found = Vec::new();
                let mut pages = req.into_paginator().send();
                while let Some(page) = pages.next().await {
                    for r in page
                        .map_err(aws)?
                        .resource_tag_mapping_list
                        .unwrap_or_default()
                    {
                        let tags = r
                            .tags
                            .unwrap_or_default()
                            .into_iter()
                            .map(|t| (t.key, t.value))
                            .collect();
                        found.push((r.resource_arn.unwrap_or_default(), tags));
                    }
                }
                Ok::<_, ProviderError>(found)
            }
        });
        let mut all = HashMap::new();
        for found in futures::future::try_join_all(pages).await? {
            all.extend(found);
        }
        Ok(all)
    }

    pub fn region(&self) -> String {
        self.sdk.region().map(|r| r.to_string()).unwrap_or_default()
    }

    /// `<account>/<region>`: where this run's resources live, as STS says.
    pub async fn location(&self) -> Result<String, ProviderError> {
        Ok(format!(
            "{}/{}",
            self.caller_account().await?,
            self.region()
        ))
    }

    /// Lets reads use `account` before STS answers. Only for a run that
    /// compares `location()` with the state's before it uses what it read.
    pub fn presume_account(&self, account: &str) {
        let _ = self.presumed_account.set(account.to_string());
    }

    /// The account presumed from the state, else the one STS names.
    pub async fn account_id(&self) -> Result<String, ProviderError> {
        match self.presumed_account.get() {
            Some(account) => Ok(account.clone()),
            None => self.caller_account().await,
        }
    }

    /// Asked of STS once per run.
    async fn caller_account(&self) -> Result<String, ProviderError> {
        self.account_id
            .get_or_try_init(|| async {
                let out = send!(self.sts.get_caller_identity())?;
                let account = out.account.ok_or_else(|| {
                    ProviderError::unexpected("STS GetCallerIdentity returned no account")
                })?;
                match &self.required_account {
                    Some((env, want)) if *want != account => Err(ProviderError::refused(format!(
                        "the credentials reach account {account}, and environment `{env}` names account {want}: nothing was done; use credentials of {want} (or `assume_role` a role there in env/{env}.yaml)"
                    ))),
                    _ => Ok(account),
                }
            })
            .await
            .cloned()
    }
}

/// The region a run uses: AWS_REGION (or AWS_DEFAULT_REGION) over the stack's
/// `region`; `None` leaves it to the profile.
pub fn effective_region(stack_region: Option<&str>) -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(|| stack_region.map(str::to_string))
}

/// Whether a failed call may have changed something in AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// It never left stackctl: nothing in AWS changed.
    NotSent,
    /// It was sent and the answer was lost (a 5xx, a timeout, a dropped
    /// connection): AWS may have acted on it.
    Unknown,
    /// AWS answered with an error code: it refused the call (a retry of a call
    /// whose first answer was lost can still meet "already exists").
    Refused,
}

/// What failed in a provider, reduced to what stackctl reasons about: its
/// cause, its message and whether the call may have reached AWS.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}{}", match (.reach, .cause) {
    (Reach::Unknown, Cause::Unexpected) => " (the call may have taken effect in AWS)",
    (Reach::Unknown, _) => " (the answer was lost: the call may have taken effect in AWS)",
    _ => "",
})]
pub struct ProviderError {
    pub cause: Cause,
    pub message: String,
    pub reach: Reach,
    /// Set when a create's own call succeeded and a later step of it failed:
    /// the resource exists, with this physical id.
    pub created: Option<String>,
}

/// Where a provider's error came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// AWS answered with an error: its code, when the answer had one.
    Answered(Option<String>),
    /// No answer came: a refused or dropped connection, a timeout.
    Transport,
    /// AWS answered, but not as the call should end: without what it
    /// returns (an id), or with the resource failed. The call was made and
    /// may have taken effect.
    Unexpected,
    /// A local file could not be read (the function's code).
    Io,
    /// The function's code could not be built.
    Build,
    /// stackctl held the call back: its intent could not be written first,
    /// or its lock was lost.
    Withheld,
    /// stackctl refused before any call (a value AWS would refuse, a
    /// resource someone else owns).
    Refused,
}

impl ProviderError {
    fn before_any_call(cause: Cause, message: impl Into<String>) -> ProviderError {
        ProviderError {
            cause,
            message: message.into(),
            reach: Reach::NotSent,
            created: None,
        }
    }

    /// stackctl's own refusal, before any call.
    pub fn refused(message: impl Into<String>) -> ProviderError {
        ProviderError::before_any_call(Cause::Refused, message)
    }

    /// A local file stackctl could not read, before any call.
    pub fn io(message: impl Into<String>) -> ProviderError {
        ProviderError::before_any_call(Cause::Io, message)
    }

    /// The function's code could not be built, before any call.
    pub fn build(message: impl Into<String>) -> ProviderError {
        ProviderError::before_any_call(Cause::Build, message)
    }

    /// A call stackctl held back.
    pub fn withheld(message: impl Into<String>) -> ProviderError {
        ProviderError::before_any_call(Cause::Withheld, message)
    }

    /// AWS answered, but not as the call should end: it may have acted on
    /// the call.
    pub fn unexpected(message: impl Into<String>) -> ProviderError {
        ProviderError {
            cause: Cause::Unexpected,
            message: message.into(),
            reach: Reach::Unknown,
            created: None,
        }
    }

    /// The error code AWS answered with.
    pub fn code(&self) -> Option<&str> {
        match &self.cause {
            Cause::Answered(code) => code.as_deref(),
            _ => None,
        }
    }

    pub fn is(&self, code: &str) -> bool {
        self.code() == Some(code)
    }

    /// Marks an error of a step after the create call succeeded: the resource
    /// exists and must stay recorded.
    pub fn after_create(mut self, physical_id: &str) -> ProviderError {
        self.created = Some(physical_id.to_string());
        self
    }
}

/// `Ok(None)` for the error codes that mean the thing does not exist.
pub fn absent<T>(
    result: Result<T, ProviderError>,
    codes: &[&str],
) -> Result<Option<T>, ProviderError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if codes.iter().any(|c| e.is(c)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The tags of `arn`: from the bulk read when it has them, else from the
/// type's own call.
pub async fn tags_or<F>(
    cx: &Ctx,
    arn: &str,
    fetch: F,
) -> Result<Vec<(String, String)>, ProviderError>
where
    F: Future<Output = Result<Vec<(String, String)>, ProviderError>>,
{
    match cx.known_tags(arn) {
        Some(tags) => Ok(tags),
        None => fetch.await,
    }
}

/// What a batched read returns: each name asked for, with the object observed
/// under it or none. The observations (each may still send a call) run 16 at
/// a time.
pub async fn observed_by_name<F>(
    names: &[String],
    name_prop: &str,
    observing: impl IntoIterator<Item = F>,
) -> BatchResult
where
    F: Future<Output = Result<Observed, ProviderError>>,
{
    use futures::{StreamExt, TryStreamExt};
    let observed: Vec<Observed> = futures::stream::iter(observing)
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let mut found: HashMap<String, Option<Observed>> =
        names.iter().map(|n| (n.clone(), None)).collect();
    for o in observed {
        if let Some(Value::String(name)) = o.props.get(name_prop) {
            found.insert(name.clone(), Some(o));
        }
    }
    Ok(found)
}

/// The tags of many resources, each from the type's own call (16 at a time),
/// by the key each was asked for: what a batched read sends beside itself
/// rather than after. Empty when a bulk read of tags is in use (reads take
/// theirs from it with `tags_or`).
pub async fn tags_of_each<F, TF>(
    cx: &Ctx,
    keys: Vec<String>,
    fetch: F,
) -> Result<HashMap<String, Vec<(String, String)>>, ProviderError>
where
    F: Fn(String) -> TF,
    TF: Future<Output = Result<Vec<(String, String)>, ProviderError>>,
{
    use futures::{StreamExt, TryStreamExt};
    if cx.has_known_tags() {
        return Ok(HashMap::new());
    }
    futures::stream::iter(keys.into_iter().map(|key| {
        let tags = fetch(key.clone());
        async move { Ok::<_, ProviderError>((key, tags.await?)) }
    }))
    .buffer_unordered(16)
    .try_collect()
    .await
}

/// A read and its tag call in one round trip: both at once, unless a bulk
/// read of tags is in use (then the tags come from it, or are fetched after
/// when it does not have them).
pub async fn with_tags<R, RF, TF>(
    cx: &Ctx,
    arn: &str,
    read: RF,
    tags: TF,
) -> Result<(R, Vec<(String, String)>), ProviderError>
where
    RF: Future<Output = Result<R, ProviderError>>,
    TF: Future<Output = Result<Vec<(String, String)>, ProviderError>>,
{
    if cx.has_known_tags() {
        let read = read.await?;
        return Ok((read, tags_or(cx, arn, tags).await?));
    }
    let (read, tags) = tokio::join!(read, tags);
    Ok((read?, tags?))
}

/// Whether a dispatch failed before a connection existed (no address, refused,
/// unreachable): then nothing was sent.
fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = err.source();
    while let Some(s) = source {
        if let Some(e) = s.downcast_ref::<hyper_util::client::legacy::Error>() {
            return e.is_connect();
        }
        source = s.source();
    }
    false
}

pub fn aws<E>(err: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let verdict = reach::verdict(&err);
    let reach = match &err {
        // What the attempts' ledger concluded, when the last attempt alone
        // would mislead (reach.rs).
        _ if verdict.is_some() => verdict.map_or(Reach::Unknown, |v| v.reach),
        SdkError::ConstructionFailure(_) => Reach::NotSent,
        SdkError::DispatchFailure(d) if d.is_user() || never_connected(&err) => Reach::NotSent,
        SdkError::ServiceError(s) if s.raw().status().as_u16() < 500 => Reach::Refused,
        _ => Reach::Unknown,
    };
    let code = err.code().map(str::to_string);
    if matches!(err, SdkError::TimeoutError(_)) || verdict.is_some_and(|v| v.timed_out) {
        return ProviderError {
            cause: Cause::Transport,
            message: format!(
                "AWS did not answer within {}s, retries included",
                operation_deadline().as_secs()
            ),
            reach,
            created: None,
        };
    }
    let message = match (&code, err.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.clone(),
        _ => {
            // No answer from AWS: say what failed on the way, without the Debug dump.
            let mut text = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                let part = s.to_string();
                if !text.contains(&part) {
                    text.push_str(": ");
                    text.push_str(&part);
                }
                source = s.source();
            }
            if text.contains("credentials") {
                text.push_str(" (configure credentials with AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)");
            }
            text
        }
    };
    let cause = match &err {
        SdkError::ServiceError(_) => Cause::Answered(code),
        _ => Cause::Transport,
    };
    ProviderError {
        cause,
        message,
        reach,
        created: None,
    }
}

/// Retries an operation while AWS answers with an error that only means "not yet"
/// (eventual consistency: a role not yet assumable, a queue name not yet free).
/// Throttling and 5xx are already retried by the SDK's standard retry mode.
pub async fn retry_eventual<T, F, Fut>(
    budget: Duration,
    is_transient: impl Fn(&ProviderError) -> bool,
    mut op: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        match op().await {
            Err(e) if is_transient(&e) && start.elapsed() + delay <= budget => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
    }
}

/// Polls `check` until it returns `Some`, with short capped intervals (the
/// SDK waiters' 15 s first delay is far longer than most of these waits).
pub async fn wait_for<T, F, Fut>(
    cx: &Ctx,
    what: &str,
    budget: Duration,
    mut check: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, ProviderError>>,
{
    let start = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    let mut reported = Duration::ZERO;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        // Long waits say they are still waiting, every ten seconds.
        if start.elapsed() >= reported + Duration::from_secs(10) {
            reported = start.elapsed();
            cx.events.emit(crate::events::Event::Waiting {
                what: what.to_string(),
                seconds: reported.as_secs_f64(),
            });
        }
        if start.elapsed() + delay > budget {
            return Err(ProviderError::refused(format!(
                "timed out after {}s waiting for {what}",
                budget.as_secs()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(5));
    }
}

/// IAM returns policy documents URL-encoded.
pub fn decode_policy(text: &str) -> Value {
    let decoded = if text.trim_start().starts_with('%') || !text.trim_start().starts_with('{') {
        percent_decode(text)
    } else {
        text.to_string()
    };
    parse_json_text(&decoded)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A list property of strings.
pub fn str_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// `{"k": "v"}` as ordered key/value pairs.
pub fn string_map(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Tags as the user sees them: stackctl's own are hidden from diffs.
pub fn user_tags<I: IntoIterator<Item = (String, String)>>(tags: I) -> Value {
    let mut sorted: Vec<_> = tags
        .into_iter()
        .filter(|(k, _)| !k.starts_with("stackctl:"))
        .collect();
    sorted.sort();
    Value::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// Which tags to set and which keys to remove to go from `old` to `new`.
pub fn tag_changes(
    old: Option<&Value>,
    new: Option<&Value>,
) -> (Vec<(String, String)>, Vec<String>) {
    let old = string_map(old);
    let new = string_map(new);
    let set = new.iter().filter(|kv| !old.contains(kv)).cloned().collect();
    let remove = old
        .iter()
        .filter(|(k, _)| !new.iter().any(|(nk, _)| nk == k))
        .map(|(k, _)| k.clone())
        .collect();
    (set, remove)
}

/// A policy or JSON property as the text AWS stores.
pub fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a JSON document AWS returned as text, keeping the text if it is not JSON.
pub fn parse_json_text(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

pub fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Name checks shared by several types: AWS's length and character rules.
pub fn check_name(v: &Value, max: usize, extra: &str, what: &str) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    if s.is_empty() || s.chars().count() > max {
        return Err(format!("must be 1 to {max} characters long ({what})"));
    }
    if let Some(bad) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(*c)))
    {
        return Err(format!("contains `{bad}`; {what}"));
    }
    Ok(())
}

/// A topic's or a queue's name: a FIFO one ends in `.fifo`, which counts
/// toward its length.
pub fn check_fifo_name(v: &Value, max: usize, what: &str) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    if s.chars().count() > max {
        return Err(format!(
            "must be 1 to {max} characters long, .fifo included ({what})"
        ));
    }
    check_name(
        &Value::from(s.strip_suffix(".fifo").unwrap_or(s)),
        max,
        "-_",
        what,
    )
}

/// A FIFO topic's or queue's setting (`fifo_topic`, `fifo_queue`): fixed
/// when it is created.
pub const fn fifo(flag: &'static str, doc: &'static str) -> Prop {
    Prop::new(flag, Type::Bool, doc)
        .default(crate::schema::Default::Bool(false))
        .force_new()
}

/// A FIFO topic's or queue's deduplication by content, the same on both.
pub const CONTENT_BASED_DEDUPLICATION: Prop = Prop::new(
    "content_based_deduplication",
    Type::Bool,
    "For a FIFO topic or queue: a message's deduplication id is the SHA-256 of its body.",
)
.default(crate::schema::Default::Bool(false));

/// A FIFO topic's or queue's rules across properties: its name ends in
/// `.fifo` exactly when `flag` is set (AWS makes a standard one otherwise,
/// and refuses the name), and only a FIFO one deduplicates by content.
pub fn fifo_rules(p: &Props, flag: &'static str, kind: &str) -> Vec<(&'static str, String)> {
    let fifo = p.get(flag).and_then(Value::as_bool).unwrap_or(false);
    let name = p
        .get("name")
        .filter(|v| !is_unknown(v))
        .and_then(Value::as_str);
    let mut errors = Vec::new();
    match (fifo, name.map(|n| n.ends_with(".fifo"))) {
        (true, Some(false)) => errors.push(("name", format!("a FIFO {kind}'s name ends in .fifo"))),
        (false, Some(true)) => errors.push((
            "name",
            format!(
                "ends in .fifo, as a FIFO {kind}'s does: set `{flag}: true`, or drop the suffix"
            ),
        )),
        _ => {}
    }
    if !fifo && p.get("content_based_deduplication") == Some(&Value::Bool(true)) {
        let message = format!("is for FIFO {kind}s only: set `{flag}: true`");
        errors.push(("content_based_deduplication", message));
    }
    errors
}

pub fn check_one_of(v: &Value, allowed: &[&str]) -> Result<(), String> {
    let written = v.as_str().unwrap_or_default();
    if allowed.contains(&written) {
        return Ok(());
    }
    // AWS's enums are case-sensitive: `sum` and `not_breaching` are refused.
    let meant = allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(written))
        .copied()
        .or_else(|| crate::spelling::nearest(written, allowed));
    let hint = meant.map_or(String::new(), |m| {
        format!(" (`{written}`: did you mean `{m}`?)")
    });
    Err(format!("must be one of {}{hint}", allowed.join(", ")))
}

/// Exactly one of two properties that say one thing two ways: both is an
/// error on the second, neither on the first.
pub fn exactly_one(
    p: &Props,
    [first, second]: [&'static str; 2],
    both: &str,
    neither: &str,
) -> Option<(&'static str, String)> {
    match (p.contains_key(first), p.contains_key(second)) {
        (true, true) => Some((second, both.into())),
        (false, false) => Some((first, neither.into())),
        _ => None,
    }
}

/// A list of ids AWS generates with this prefix (`sg-`, `subnet-`).
pub fn check_prefixed(v: &Value, prefix: &str, what: &str) -> Result<(), String> {
    match str_list(Some(v))
        .into_iter()
        .find(|id| !id.starts_with(prefix))
    {
        Some(id) => Err(format!("must be {what} ids ({prefix}...; `{id}` is not)")),
        None => Ok(()),
    }
}

pub fn check_range(v: &Value, min: i64, max: i64) -> Result<(), String> {
    match v.as_i64() {
        Some(n) if (min..=max).contains(&n) => Ok(()),
        Some(n) => Err(format!("must be between {min} and {max}, got {n}")),
        None => Err(format!("must be an integer between {min} and {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_of_another_case_or_spelling_is_answered_with_awss() {
        let statistics = ["SampleCount", "Average", "Sum"];
        assert_eq!(
            check_one_of(&json!("sum"), &statistics).unwrap_err(),
            "must be one of SampleCount, Average, Sum (`sum`: did you mean `Sum`?)"
        );
        let missing = ["breaching", "notBreaching", "ignore", "missing"];
        assert!(check_one_of(&json!("not_breaching"), &missing)
            .unwrap_err()
            .ends_with("did you mean `notBreaching`?)"));
        assert_eq!(
            check_one_of(&json!("x"), &statistics).unwrap_err(),
            "must be one of SampleCount, Average, Sum"
        );
    }

    /// A property the stack file leaves out is compared with AWS only through
    /// its default (`Unset`: as absent): without one, a value set by hand in
    /// the console would never show in a plan. These have none on purpose:
    /// AWS chooses when the file does not (a VPC, a subnet), the file sets one
    /// of a pair (`filename` or `source`), a permission's condition is
    /// part of a statement that is replaced, never updated, or the property
    /// is unmanaged when left out (`ingress`, `egress`, as documented).
    #[test]
    fn every_optional_property_is_compared_or_chosen_by_aws() {
        let aws_chooses = [
            "aws_ami.filter",
            "aws_instance.vpc_security_group_ids",
            "aws_instance.subnet_id",
            "aws_instance.key_name",
            "aws_lambda_function.filename",
            "aws_lambda_function.source",
            "aws_lambda_permission.source_arn",
            "aws_lambda_permission.source_account",
            "aws_security_group.name",
            "aws_security_group.name_prefix",
            "aws_security_group.vpc_id",
            "aws_security_group.ingress",
            "aws_security_group.egress",
        ];
        for p in all() {
            let s = p.schema();
            for prop in s
                .props
                .iter()
                .filter(|p| !p.required && !p.computed && p.default.is_none())
            {
                let name = format!("{}.{}", s.type_name, prop.name);
                assert!(
                    aws_chooses.contains(&name.as_str()),
                    "{name}: give it a default"
                );
            }
            for prop in s.props.iter() {
                if let Some(crate::schema::Default::Json(text)) = prop.default {
                    let parsed = serde_json::from_str::<Value>(text);
                    assert!(parsed.is_ok(), "{}.{}: {text}", s.type_name, prop.name);
                }
            }
        }
    }

    /// AWS counts the `.fifo` of a FIFO name toward its length (SQS's quotas
    /// page; Terraform's patterns are {1,75}\.fifo and {1,251}\.fifo).
    #[test]
    fn a_fifo_suffix_counts_toward_the_names_length() {
        for (type_name, max) in [("aws_sqs_queue", 80), ("aws_sns_topic", 256)] {
            let schema = lookup(type_name).unwrap().schema();
            let check = schema.prop("name").and_then(|p| p.check).unwrap();
            let name = |base: usize, suffix: &str| Value::from("a".repeat(base) + suffix);
            assert!(check(&name(max, "")).is_ok());
            assert!(check(&name(max - 5, ".fifo")).is_ok());
            let err = check(&name(max - 4, ".fifo")).unwrap_err();
            assert!(
                err.starts_with(&format!("must be 1 to {max} characters long")),
                "{err}"
            );
            assert!(check(&name(max, ".fifo")).is_err());
        }
    }

    #[test]
    fn registry_names_are_unique_and_schemas_consistent() {
        let mut names: Vec<_> = all().map(|p| p.schema().type_name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        for p in all() {
            let s = p.schema();
            assert_eq!(
                s.taggable(),
                s.prop("tags").is_some(),
                "{}: taggable iff it has tags",
                s.type_name
            );
            assert!(!s.type_name.is_empty() && !s.doc.is_empty());
            for prop in s.props {
                assert!(
                    !(prop.required && prop.default.is_some()),
                    "{}.{} required with default",
                    s.type_name,
                    prop.name
                );
            }
        }
    }

    /// The dataflow code finds types by the part their schema gives them, so
    /// a type joins it by its schema alone and a rename touches one module.
    #[test]
    fn check_simulate_and_the_diagram_name_no_type() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let dir = |d: &str| {
            std::fs::read_dir(src.join(d))
                .unwrap()
                .map(|e| e.unwrap().path())
        };
        let files = dir("check")
            .chain(dir("sim"))
            .chain([src.join("diagram.rs")]);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in code.lines().enumerate() {
                assert!(
                    !line.contains("\"aws_"),
                    "{}:{}: names a type: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
    }

    /// The SDK calls written in a file: `.logs().put_metric_filter(` as
    /// `logs:PutMetricFilter` (operations are named as IAM's actions).
    fn sdk_calls(text: &str) -> Vec<String> {
        let call = regex::Regex::new(
            r"\.(cloudwatch|logs|sns|sqs|iam|lambda|ec2|tagging)\(\)\s*\.([a-z_0-9]+)\(",
        )
        .unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        call.captures_iter(code)
            .map(|c| {
                let service = if &c[1] == "tagging" { "tag" } else { &c[1] };
                let words = c[2].split('_').map(|w| w[..1].to_uppercase() + &w[1..]);
                format!("{service}:{}", words.collect::<String>())
            })
            .collect()
    }

    #[test]
    fn a_composite_id_splits_as_its_schema_writes_it() {
        let stream = lookup("aws_cloudwatch_log_stream").unwrap().schema();
        assert_eq!(
            id_parts(stream, "/app/logs:web-1").unwrap(),
            ("/app/logs", "web-1")
        );
        let attachment = lookup("aws_iam_role_policy_attachment").unwrap().schema();
        let arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";
        let id = format!("lambda_role/{arn}");
        assert_eq!(id_parts(attachment, &id).unwrap(), ("lambda_role", arn));
        let err = id_parts(stream, "no-separator").unwrap_err().to_string();
        assert_contains!(err, "expected {log_group_name}:{name}");
    }

    /// `stackctl permissions` cannot miss a call: each provider's file sends
    /// only what its schema's actions list, and the tag calls only what the
    /// tagging families list.
    #[test]
    fn every_call_a_provider_sends_is_declared_in_its_actions() {
        use crate::schema::Tagging;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/providers");
        for p in all() {
            let s = p.schema();
            let file = dir.join(format!("{}.rs", s.type_name.trim_start_matches("aws_")));
            let text = std::fs::read_to_string(&file).unwrap();
            let a = s.actions;
            let declared = [a.read, a.create, a.update, a.delete].concat();
            for call in sdk_calls(&text) {
                assert!(
                    declared.contains(&call.as_str()),
                    "{}: {call} is not in its schema's actions",
                    file.display()
                );
            }
        }
        let families = [
            Tagging::Logs,
            Tagging::CloudWatch,
            Tagging::IamRole,
            Tagging::IamPolicy,
            Tagging::Lambda,
            Tagging::Sns,
            Tagging::Sqs,
            Tagging::Ec2,
        ];
        let tag_actions: Vec<&str> = families
            .iter()
            .flat_map(|f| [f.actions().0, f.actions().1].concat())
            .collect();
        let tagging = std::fs::read_to_string(dir.join("tagging.rs")).unwrap();
        let calls = sdk_calls(&tagging);
        assert!(calls.len() >= 20, "{calls:?}");
        for call in calls {
            assert!(
                tag_actions.contains(&call.as_str()),
                "tagging.rs: {call} is not in a family's actions"
            );
        }
    }

    #[test]
    fn every_dataflow_part_is_played_by_one_type() {
        use crate::schema::Part;
        let parts = [
            Part::LogGroup,
            Part::MetricFilter,
            Part::Alarm,
            Part::Function,
            Part::Invocation,
            Part::Topic,
            Part::Subscription,
            Part::Queue,
            Part::QueuePolicy,
            Part::Role,
            Part::Policy,
            Part::PolicyAttachment,
            Part::Firewall,
            Part::Instance,
        ];
        for part in parts {
            let players: Vec<_> = all().filter(|p| p.schema().part == part).collect();
            assert_eq!(players.len(), 1, "{part:?}");
        }
    }

    #[test]
    fn iam_policies_are_url_decoded() {
        let v = decode_policy("%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D");
        assert_eq!(v, json!({"Version": "2012-10-17", "Statement": []}));
        assert_eq!(decode_policy(r#"{"a":1}"#), json!({"a": 1}));
    }

    #[test]
    fn tag_changes_split_set_and_remove() {
        let (set, remove) = tag_changes(
            Some(&json!({"a": "1", "b": "2"})),
            Some(&json!({"a": "1", "b": "3", "c": "4"})),
        );
        assert_eq!(
            set,
            vec![("b".into(), "3".into()), ("c".into(), "4".into())]
        );
        assert!(remove.is_empty());
        let (set, remove) = tag_changes(Some(&json!({"a": "1"})), Some(&json!({})));
        assert!(set.is_empty());
        assert_eq!(remove, vec!["a".to_string()]);
    }

    #[tokio::test]
    async fn a_call_that_never_connected_is_known_not_to_have_been_sent() {
        // Nothing listens on a port just freed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .region(aws_config::Region::new("us-east-2"))
            .credentials_provider(aws_sdk_sns::config::SharedCredentialsProvider::new(
                aws_sdk_sns::config::Credentials::new("a", "b", None, None, "test"),
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        let err = send!(aws_sdk_sns::Client::new(&sdk).create_topic().name("t")).unwrap_err();
        assert_eq!(err.reach, Reach::NotSent, "{err}");
        assert!(!err.to_string().contains("may have taken effect"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_eventual_retries_transient_errors_within_budget() {
        let mut calls = 0;
        let out = retry_eventual(
            Duration::from_secs(60),
            |e| e.is("NotYet"),
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 4 {
                        Err(ProviderError {
                            cause: Cause::Answered(Some("NotYet".into())),
                            ..ProviderError::refused("not yet")
                        })
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(out.unwrap(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_eventual_gives_up_after_budget_and_on_other_errors() {
        let start = tokio::time::Instant::now();
        let out: Result<(), _> = retry_eventual(
            Duration::from_secs(5),
            |e| e.is("NotYet"),
            || async {
                Err(ProviderError {
                    cause: Cause::Answered(Some("NotYet".into())),
                    ..ProviderError::refused("still not")
                })
            },
        )
        .await;
        assert!(out.is_err());
        assert!(start.elapsed() <= Duration::from_secs(5));
        let mut calls = 0;
        let out: Result<(), _> = retry_eventual(
            Duration::from_secs(60),
            |e| e.is("NotYet"),
            || {
                calls += 1;
                async { Err(ProviderError::refused("fatal")) }
            },
        )
        .await;
        assert!(out.is_err());
        assert_eq!(calls, 1);
    }
}

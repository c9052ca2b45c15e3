use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, LastUpdateStatus, Runtime, State, VpcConfig,
};
use serde_json::{Map, Value};

use crate::{build, package};

use super::Typed;
use super::{
    absent, attrs, exactly_one, retry_eventual, split_tags, str_list, string_map, user_tags,
    wait_for, Attrs, Created, Ctx, Observed, Provider, ProviderError, ReadResult, Resource, Update,
};
use crate::schema::{
    is_unknown, unknown, Actions, ActsOn, Attr, Compare, Default, Names, Part, Prop, Props, Schema,
    Service, Tagging, Type,
};

pub struct LambdaFunction;

/// Variables the Lambda platform sets itself; AWS rejects them.
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

fn check_function_name(v: &Value) -> Result<(), String> {
    super::check_name(
        v,
        64,
        "-_",
        "function names use letters, digits, `-` and `_`",
    )
}

fn check_role(v: &Value) -> Result<(), String> {
    let s = v.as_str().unwrap_or_default();
    let mut parts = s.splitn(6, ':');
    let ok = parts.next() == Some("arn")
        && parts.next().is_some_and(|p| p.starts_with("aws"))
        && parts.next() == Some("iam")
        && parts.next() == Some("")
        && parts
            .next()
            .is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
        && parts
            .next()
            .is_some_and(|r| r.starts_with("role/") && r.len() > 5);
    if ok {
        Ok(())
    } else {
        Err("must be a role ARN: arn:aws:iam::<account>:role/<name>".into())
    }
}

fn check_runtime(v: &Value) -> Result<(), String> {
    let r = v.as_str().unwrap_or_default();
    let known = ["provided.al2023", "provided.al2", "provided"].contains(&r)
        || ["python3.", "nodejs", "java", "dotnet", "ruby3."]
            .iter()
            .any(|p| r.starts_with(p));
    if known {
        Ok(())
    } else {
        Err("must be a Lambda runtime such as provided.al2023 or python3.12".into())
    }
}

fn check_architectures(v: &Value) -> Result<(), String> {
    match str_list(Some(v)).as_slice() {
        [a] if a == "x86_64" || a == "arm64" => Ok(()),
        _ => Err("must be [x86_64] or [arm64]".into()),
    }
}

fn check_environment(v: &Value) -> Result<(), String> {
    let vars = string_map(v.get("variables"));
    let mut size = 0;
    for (k, val) in &vars {
        let mut chars = k.chars();
        let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && k.len() >= 2
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return Err(format!("variable `{k}` must match [a-zA-Z][a-zA-Z0-9_]+"));
        }
        if RESERVED_ENV.contains(&k.as_str()) {
            return Err(format!("variable `{k}` is reserved by the Lambda platform"));
        }
        size += k.len() + val.len();
    }
    if size > 4096 {
        return Err(format!("variables total {size} bytes; Lambda allows 4 KB"));
    }
    Ok(())
}

static ENVIRONMENT: &[Prop] = &[Prop::new(
    "variables",
    Type::StringMap,
    "Environment variables; their values are sensitive unless the function says `sensitive: false` (or lists the names that are).",
)
.sensitive()];

/// Layer version ARNs, at most five (Lambda's limit), applied in order.
fn check_layers(v: &Value) -> Result<(), String> {
    let layers = str_list(Some(v));
    if layers.len() > 5 {
        return Err(format!(
            "names {} layers; a function takes at most 5",
            layers.len()
        ));
    }
    match layers.iter().find(|l| !is_layer_version_arn(l)) {
        Some(l) => Err(format!(
            "`{l}` must be a layer version ARN: arn:aws:lambda:<region>:<account>:layer:<name>:<version>"
        )),
        None => Ok(()),
    }
}

fn is_layer_version_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    matches!(parts.as_slice(),
        ["arn", partition, "lambda", region, account, "layer", name, version]
            if partition.starts_with("aws") && !region.is_empty() && !account.is_empty()
                && !name.is_empty() && version.parse::<u64>().is_ok())
}

static VPC_CONFIG: &[Prop] = &[
    Prop::new(
        "subnet_ids",
        Type::List(&Type::String),
        "Subnets (subnet-...) the function's network interfaces go in.",
    )
    .required()
    .check(|v| super::check_prefixed(v, "subnet-", "subnet")),
    Prop::new(
        "security_group_ids",
        Type::List(&Type::String),
        "Security groups (sg-...) of those interfaces.",
    )
    .takes(&[("aws_security_group", Names::Id)])
    .required()
    .check(|v| super::check_prefixed(v, "sg-", "security group")),
];

/// Both lists empty (no VPC) or both given, within Lambda's limits.
fn check_vpc_config(v: &Value) -> Result<(), String> {
    let (subnets, groups) = (
        str_list(v.get("subnet_ids")).len(),
        str_list(v.get("security_group_ids")).len(),
    );
    match (subnets, groups) {
        (0, 0) => Ok(()),
        (0, _) | (_, 0) => {
            Err("must name subnets and security groups both, or neither (no VPC)".into())
        }
        (17.., _) => Err(format!("names {subnets} subnets; Lambda takes at most 16")),
        (_, 6..) => Err(format!(
            "names {groups} security groups; Lambda takes at most 5"
        )),
        _ => Ok(()),
    }
}

fn cross_check(p: &Props) -> Vec<(&'static str, String)> {
    exactly_one(
        p,
        ["filename", "source"],
        "set either `source` (a crate stackctl builds) or `filename` (a zip), not both",
        "set `source: <crate dir>` or `filename: <zip>` for the function's code",
    )
    .into_iter()
    .collect()
}

static SCHEMA: Schema = Schema {
    type_name: "aws_lambda_function",
    service: Service::Lambda,
    doc: "A Lambda function. Its id is the function name.",
    props: &[
        Prop::new("function_name", Type::String, "Function name.")
            .required()
            .force_new()
            .check(check_function_name),
        Prop::new("role", Type::String, "ARN of the execution role.")
            .takes(&[("aws_iam_role", Names::Arn)])
            .required()
            .check(check_role),
        Prop::new(
            "handler",
            Type::String,
            "Handler (custom runtimes: the executable, `bootstrap`).",
        )
        .default(Default::Str("bootstrap")),
        Prop::new("runtime", Type::String, "Runtime, e.g. provided.al2023.")
            .required()
            .check(check_runtime),
        Prop::new(
            "architectures",
            Type::List(&Type::String),
            "[x86_64] or [arm64].",
        )
        .default(Default::Json(r#"["x86_64"]"#))
        .compare(Compare::Set)
        .check(check_architectures),
        Prop::new("timeout", Type::Int, "Seconds, 1-900.")
            .default(Default::Int(3))
            .check(|v| super::check_range(v, 1, 900)),
        Prop::new("memory_size", Type::Int, "MB, 128-10240.")
            .default(Default::Int(128))
            .check(|v| super::check_range(v, 128, 10_240)),
        Prop::new(
            "environment",
            Type::Object(ENVIRONMENT),
            "Environment: {variables: {...}}.",
        )
        .default(Default::Json(r#"{"variables": {}}"#))
        .check(check_environment),
        Prop::new("description", Type::String, "Description.").default(Default::Str("")),
        Prop::new(
            "layers",
            Type::List(&Type::String),
            "Layer version ARNs, at most 5, applied in this order. Left out: none.",
        )
        .default(Default::Json("[]"))
        .check(check_layers),
        Prop::new(
            "vpc_config",
            Type::Object(VPC_CONFIG),
            "The VPC it runs in: {subnet_ids: [...], security_group_ids: [...]}; the role must allow ec2:CreateNetworkInterface. Left out: none.",
        )
        .default(Default::Json(r#"{"subnet_ids": [], "security_group_ids": []}"#))
        .compare(Compare::Set)
        .check(check_vpc_config),
        Prop::new(
            "reserved_concurrent_executions",
            Type::Int,
            "Invocations it may run at once, reserved from the account's limit: 0 throttles every invocation, -1 reserves none.",
        )
        .default(Default::Int(-1))
        .check(|v| match v.as_i64() {
            Some(n) if (-1..=i64::from(i32::MAX)).contains(&n) => Ok(()),
            _ => Err("must be -1 (none reserved) or a number of invocations, 0 or more".into()),
        }),
        Prop::new(
            "filename",
            Type::String,
            "Path of a zip with the code, relative to the stack file.",
        ),
        Prop::new(
            "source",
            Type::String,
            "Path of a Rust crate stackctl builds into the code, relative to the stack file.",
        ),
        Prop::new(
            "source_code_hash",
            Type::String,
            "Base64 SHA-256 of the zip, AWS's CodeSha256: of `filename`, or of the build of `source` (known once built).",
        )
        .computed()
        .derived_from("source_hash"),
        Prop::new(
            "source_hash",
            Type::String,
            "SHA-256 of everything the build of `source` reads: the crate, its path dependencies, Cargo.lock, cargo configuration, toolchain, target and profile.",
        )
        .computed(),
        Prop::tags(),
    ],
    attrs: &[
        Attr::new("arn", "Function ARN."),
        Attr::new("id", "Function name."),
        Attr::new("invoke_arn", "ARN for API Gateway integrations."),
        Attr::new("version", "Latest version ($LATEST)."),
        Attr::new("code_sha256", "CodeSha256 of the deployed code."),
    ],
    tagging: Tagging::Lambda,
    identity: &["function_name"],
    arn_format: Some("arn:aws:lambda:{region}:{account}:function:{function_name}"),
    cross_check: Some(cross_check),
    id_format: Some("{function_name}"),
    names: &[("arn", Names::Arn), ("function_name", Names::Name), ("id", Names::Name)],
    part: Part::Function,
    actions: Actions {
        read: &["lambda:GetFunction", "lambda:GetFunctionConfiguration"],
        // Lambda checks the caller may read the layers and the VPC it names.
        create: &[
            "lambda:CreateFunction",
            "iam:PassRole",
            "lambda:PutFunctionConcurrency",
            "lambda:GetLayerVersion",
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeSubnets",
            "ec2:DescribeVpcs",
        ],
        update: &[
            "lambda:UpdateFunctionCode",
            "lambda:UpdateFunctionConfiguration",
            "iam:PassRole",
            "lambda:PutFunctionConcurrency",
            "lambda:DeleteFunctionConcurrency",
            "lambda:GetLayerVersion",
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeSubnets",
            "ec2:DescribeVpcs",
        ],
        delete: &["lambda:DeleteFunction"],
        on: ActsOn::Itself,
    },
    ..Schema::BASE
};

impl Typed for LambdaFunction {
    const SCHEMA: &'static Schema = &SCHEMA;
}

fn architecture(props: &Props) -> String {
    str_list(props.get("architectures"))
        .into_iter()
        .next()
        .unwrap_or_else(|| "x86_64".into())
}

/// The code to upload: the zip named by `filename`, or the crate named by
/// `source`, built (or taken from the artifact cache) off the async runtime.
async fn read_zip(cx: &Ctx, r: &Resource<'_>) -> Result<Vec<u8>, ProviderError> {
    if let Some(f) = r.str("filename") {
        let path = cx.stack_dir.join(f);
        return std::fs::read(&path)
            .map_err(|e| ProviderError::io(format!("cannot read {}: {e}", path.display())));
    }
    let source = r
        .str("source")
        .ok_or_else(|| ProviderError::refused("no code: set `filename` or `source`"))?;
    let (crate_dir, arch) = (cx.stack_dir.join(source), architecture(r.props));
    let events = cx.events.clone();
    let artifact =
        tokio::task::spawn_blocking(move || build::build(&crate_dir, &arch, events.as_ref()))
            .await
            .map_err(|e| ProviderError::build(e.to_string()))?
            .map_err(|e| ProviderError::build(e.to_string()))?;
    Ok(artifact.zip)
}

fn function_attrs(arn: &str, name: &str, region: &str, code_sha256: &str) -> Map<String, Value> {
    let invoke =
        format!("arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations");
    attrs([
        ("arn", arn.into()),
        ("id", name.into()),
        ("invoke_arn", invoke.into()),
        ("version", "$LATEST".into()),
        ("code_sha256", code_sha256.into()),
    ])
}

fn environment(r: &Resource<'_>) -> Option<Environment> {
    let vars = r.props.get("environment")?.get("variables")?;
    Some(
        Environment::builder()
            .set_variables(Some(string_map(Some(vars)).into_iter().collect()))
            .build(),
    )
}

fn layers(r: &Resource<'_>) -> Vec<String> {
    str_list(r.props.get("layers"))
}

/// The VPC as the stack file says; empty lists detach the function from one.
fn vpc_config(r: &Resource<'_>) -> VpcConfig {
    let vpc = r.props.get("vpc_config");
    let list = |field| Some(str_list(vpc.and_then(|v| v.get(field))));
    VpcConfig::builder()
        .set_subnet_ids(list("subnet_ids"))
        .set_security_group_ids(list("security_group_ids"))
        .build()
}

fn architectures(r: &Resource<'_>) -> Option<Vec<Architecture>> {
    let list = str_list(r.props.get("architectures"));
    (!list.is_empty()).then(|| {
        list.iter()
            .map(|a| Architecture::from(a.as_str()))
            .collect()
    })
}

/// Lambda refuses calls on a function that is Pending or mid-update: wait for
/// State Active and LastUpdateStatus Successful. Returns the configuration
/// that showed it ready.
async fn wait_ready(cx: &Ctx, name: &str) -> Result<GetFunctionConfigurationOutput, ProviderError> {
    wait_for(
        cx,
        &format!("function {name} to become Active"),
        Duration::from_secs(300),
        || async {
            let c = send!(cx.lambda().get_function_configuration().function_name(name))?;
            match (&c.state, &c.last_update_status) {
                (Some(State::Failed), _) | (_, Some(LastUpdateStatus::Failed)) => {
                    Err(ProviderError::unexpected(format!(
                        "function {name} failed: {}",
                        c.state_reason
                            .or(c.last_update_status_reason)
                            .unwrap_or_default()
                    )))
                }
                (Some(State::Active) | None, Some(LastUpdateStatus::Successful) | None) => {
                    Ok(Some(c))
                }
                _ => Ok(None),
            }
        },
    )
    .await
}

/// Right after a role is created Lambda may not be able to assume it yet, nor
/// see the network-interface rights just granted to it for a VPC.
fn role_not_ready(e: &ProviderError) -> bool {
    e.is("InvalidParameterValueException")
        && (e.message.contains("cannot be assumed")
            || e.message
                .contains("does not have permissions to call CreateNetworkInterface"))
}

fn conflict(e: &ProviderError) -> bool {
    e.is("ResourceConflictException")
}

/// What UpdateFunctionConfiguration changes: `configured!`'s properties and
/// the environment.
const CONFIGURATION: &[&str] = &[
    "role",
    "handler",
    "runtime",
    "timeout",
    "memory_size",
    "description",
    "environment",
    "layers",
    "vpc_config",
];

/// What CreateFunction and UpdateFunctionConfiguration both take from the
/// properties, set on either call's builder (the two share no trait).
macro_rules! configured {
    ($req:expr, $r:expr) => {
        $req.role($r.required_str("role")?)
            .handler($r.str("handler").unwrap_or("bootstrap"))
            .runtime(Runtime::from($r.required_str("runtime")?))
            .timeout($r.i64("timeout").unwrap_or(3) as i32)
            .memory_size($r.i64("memory_size").unwrap_or(128) as i32)
            .description($r.str("description").unwrap_or_default())
    };
}

#[async_trait]
impl Provider for LambdaFunction {
    fn derive(&self, props: &mut Props, stack_dir: &Path) -> Result<(), (&'static str, String)> {
        if let Some(f) = props
            .get("filename")
            .filter(|f| !is_unknown(f))
            .and_then(Value::as_str)
        {
            let path = stack_dir.join(f);
            let bytes = std::fs::read(&path)
                .map_err(|e| ("filename", format!("cannot read {}: {e}", path.display())))?;
            props.insert(
                "source_code_hash".into(),
                Value::from(package::code_sha256(&bytes)),
            );
        }
        if let Some(source) = props
            .get("source")
            .filter(|s| !is_unknown(s))
            .and_then(Value::as_str)
        {
            let crate_dir = stack_dir.join(source);
            let hash = build::source_hash(&crate_dir, &architecture(props))
                .map_err(|e| ("source", e.0))?;
            // Known without building only when these sources were built before;
            // else the plan takes it from the state while the sources are unchanged.
            let sha =
                build::cached_code_sha256(&crate_dir, &hash).map_or_else(unknown, Value::from);
            props.insert("source_code_hash".into(), sha);
            props.insert("source_hash".into(), Value::from(hash));
        }
        Ok(())
    }

    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let name = r.required_str("function_name")?;
        let zip = read_zip(cx, r).await?;
        let vpc = Some(vpc_config(r)).filter(|v| !v.subnet_ids().is_empty());
        let out = retry_eventual(Duration::from_secs(180), role_not_ready, || async {
            let req = cx.lambda().create_function().function_name(name);
            send!(configured!(req, r)
                .code(
                    FunctionCode::builder()
                        .zip_file(Blob::new(zip.clone()))
                        .build(),
                )
                .set_architectures(architectures(r))
                .set_environment(environment(r))
                .set_layers(Some(layers(r)).filter(|l| !l.is_empty()))
                .set_vpc_config(vpc.clone())
                .set_tags(Some(r.tags_with_ownership(cx).into_iter().collect())))
        })
        .await?;
        // Reserving none is what a new function has: no call for it.
        let reserves = r.i64(RESERVED).is_some_and(|n| n != -1);
        let ready = async {
            wait_ready(cx, name).await?;
            match reserves {
                true => set_concurrency(cx, name, r).await,
                false => Ok(()),
            }
        };
        ready.await.map_err(|e| e.after_create(name))?;
        let arn = out.function_arn.unwrap_or_default();
        let sha = out.code_sha256.unwrap_or_default();
        Ok(Created::new(
            name,
            function_attrs(&arn, name, &cx.region(), &sha),
        ))
    }

    async fn read(&self, cx: &Ctx, name: &str) -> ReadResult {
        let got = send!(cx.lambda().get_function().function_name(name));
        let Some(out) = absent(got, &["ResourceNotFoundException"])? else {
            return Ok(None);
        };
        let c = out
            .configuration
            .ok_or_else(|| ProviderError::unexpected("GetFunction returned no configuration"))?;
        let sha = c.code_sha256.clone().unwrap_or_default();
        let arn = c.function_arn.clone().unwrap_or_default();
        let mut p = props_of(name, c);
        let reserved = out
            .concurrency
            .and_then(|c| c.reserved_concurrent_executions);
        p.insert(RESERVED.into(), Value::from(reserved.map_or(-1, i64::from)));
        let (tags, owner) = split_tags(out.tags.unwrap_or_default());
        p.insert("tags".into(), tags);
        Ok(Some(Observed {
            props: p,
            attrs: function_attrs(&arn, name, &cx.region(), &sha),
            owner,
        }))
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let (name, r, changed) = (u.id, u.r, u.changed);
        if changed.iter().any(|c| CONFIGURATION.contains(c)) {
            wait_ready(cx, name).await?;
            retry_eventual(
                Duration::from_secs(180),
                |e| role_not_ready(e) || conflict(e),
                || async {
                    let req = cx.lambda().update_function_configuration();
                    // No environment clears the one the function has.
                    let none = || Environment::builder().build();
                    // Layers and the VPC only when they change: sending a VPC
                    // again may make Lambda set up its interfaces again.
                    let sent = |prop| changed.contains(&prop);
                    send!(configured!(req.function_name(name), r)
                        .environment(environment(r).unwrap_or_else(none))
                        .set_layers(sent("layers").then(|| layers(r)))
                        .set_vpc_config(sent("vpc_config").then(|| vpc_config(r))))
                },
            )
            .await?;
        }
        if changed.iter().any(|c| {
            [
                "source_code_hash",
                "source_hash",
                "architectures",
                "filename",
                "source",
            ]
            .contains(c)
        }) {
            let zip = read_zip(cx, r).await?;
            wait_ready(cx, name).await?;
            retry_eventual(Duration::from_secs(60), conflict, || async {
                send!(cx
                    .lambda()
                    .update_function_code()
                    .function_name(name)
                    .zip_file(Blob::new(zip.clone()))
                    .set_architectures(architectures(r)))
            })
            .await?;
        }
        if changed.contains(&RESERVED) {
            set_concurrency(cx, name, r).await?;
        }
        let config = wait_ready(cx, name).await?;
        let (arn, sha) = (
            config.function_arn.unwrap_or_default(),
            config.code_sha256.unwrap_or_default(),
        );
        Ok(function_attrs(&arn, name, &cx.region(), &sha))
    }

    async fn delete(&self, cx: &Ctx, name: &str, _props: &Props) -> Result<(), ProviderError> {
        let deleted = send!(cx.lambda().delete_function().function_name(name));
        absent(deleted, &["ResourceNotFoundException"]).map(|_| ())
    }
}

const RESERVED: &str = "reserved_concurrent_executions";

/// The function's reserved concurrency as the stack file says: -1 reserves
/// none (the function shares the account's unreserved pool).
async fn set_concurrency(cx: &Ctx, name: &str, r: &Resource<'_>) -> Result<(), ProviderError> {
    match r.i64(RESERVED).unwrap_or(-1) {
        -1 => send!(cx
            .lambda()
            .delete_function_concurrency()
            .function_name(name))
        .map(|_| ()),
        n => send!(cx
            .lambda()
            .put_function_concurrency()
            .function_name(name)
            .reserved_concurrent_executions(n as i32))
        .map(|_| ()),
    }
}

/// GetFunction's configuration as the stack file names it (tags aside):
/// what Lambda leaves out is its default (3 s, 128 MB).
fn props_of(name: &str, c: aws_sdk_lambda::types::FunctionConfiguration) -> Props {
    let runtime = c
        .runtime
        .map(|r| r.as_str().to_string())
        .unwrap_or_default();
    let architectures = c.architectures.unwrap_or_default();
    let architectures: Vec<Value> = architectures
        .iter()
        .map(|a| Value::from(a.as_str()))
        .collect();
    let vars = c.environment.and_then(|e| e.variables).unwrap_or_default();
    let layers: Vec<Value> = c
        .layers
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| l.arn.map(Value::from))
        .collect();
    let vpc = c.vpc_config.as_ref();
    let vpc = serde_json::json!({
        "subnet_ids": vpc.map(|v| v.subnet_ids()).unwrap_or_default(),
        "security_group_ids": vpc.map(|v| v.security_group_ids()).unwrap_or_default(),
    });
    let text = |v: Option<String>| Value::from(v.unwrap_or_default());
    Props::from_iter(
        [
            ("function_name", Value::from(name)),
            ("role", text(c.role)),
            ("handler", text(c.handler)),
            ("runtime", Value::from(runtime)),
            ("architectures", Value::Array(architectures)),
            ("timeout", Value::from(c.timeout.unwrap_or(3))),
            ("memory_size", Value::from(c.memory_size.unwrap_or(128))),
            (
                "environment",
                serde_json::json!({"variables": user_tags(vars)}),
            ),
            ("description", text(c.description)),
            ("layers", Value::Array(layers)),
            ("vpc_config", vpc),
            ("source_code_hash", text(c.code_sha256)),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_functions_configuration_reads_with_lambdas_defaults() {
        use aws_sdk_lambda::types::{
            Architecture, EnvironmentResponse, FunctionConfiguration, Runtime,
        };
        let c = FunctionConfiguration::builder()
            .role("arn:aws:iam::123456789012:role/fixer")
            .handler("bootstrap")
            .runtime(Runtime::Providedal2023)
            .architectures(Architecture::X8664)
            .environment(
                EnvironmentResponse::builder()
                    .variables("TOPIC_ARN", "t")
                    .build(),
            )
            .code_sha256("abc=")
            .build();
        assert_eq!(
            Value::Object(props_of("fix", c)),
            json!({"function_name": "fix", "role": "arn:aws:iam::123456789012:role/fixer",
                   "handler": "bootstrap", "runtime": "provided.al2023",
                   "architectures": ["x86_64"], "timeout": 3, "memory_size": 128,
                   "environment": {"variables": {"TOPIC_ARN": "t"}}, "description": "",
                   "layers": [], "vpc_config": {"subnet_ids": [], "security_group_ids": []},
                   "source_code_hash": "abc="})
        );
    }
}

//! The declarative description of a resource type. Validation, diffing, plan
//! rendering and the generated docs all read it; provider code only talks to AWS.

use serde_json::{Map, Value};

/// Properties of one resource as resolved JSON, keyed by schema property name.
pub type Props = Map<String, Value>;

/// The properties a JSON object literal holds, for tests.
#[cfg(test)]
pub fn props(object: Value) -> Props {
    object.as_object().expect("a JSON object").clone()
}

#[derive(Debug, Clone, Copy)]
pub enum Type {
    String,
    Int,
    Float,
    Bool,
    List(&'static Type),
    /// String keys to string values (tags, environment variables, dimensions).
    StringMap,
    /// A nested block with its own properties.
    Object(&'static [Prop]),
    /// An IAM-style policy document: a YAML map or a JSON string.
    Policy,
    /// Any JSON document: a YAML map or a JSON string (filter policies).
    Json,
}

impl Type {
    pub fn describe(&self) -> String {
        match self {
            Type::String => "a string".into(),
            Type::Int => "an integer".into(),
            Type::Float => "a number".into(),
            Type::Bool => "a boolean".into(),
            Type::List(inner) => format!("a list of {}", inner.describe_plural()),
            Type::StringMap => "a map of strings".into(),
            Type::Object(_) => "a map".into(),
            Type::Policy => "a policy document (map or JSON string)".into(),
            Type::Json => "a JSON document (map or JSON string)".into(),
        }
    }

    fn describe_plural(&self) -> String {
        match self {
            Type::String => "strings".into(),
            Type::Int => "integers".into(),
            Type::Float => "numbers".into(),
            Type::Bool => "booleans".into(),
            other => format!("({})", other.describe()),
        }
    }
}

/// How two values of a property are compared when diffing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Exact,
    /// IAM policy semantics: key order, whitespace, one-item list vs scalar and
    /// statement order do not matter.
    Policy,
    /// JSON by value (key order and whitespace do not matter).
    Json,
    /// A list whose order AWS does not keep.
    Set,
    /// A set whose members may each hold several of these list fields: a
    /// member stands for one member per element (a firewall rule with two
    /// CIDR blocks is two rules to AWS, which may group them otherwise).
    SetPer(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    Int(i64),
    Bool(bool),
    Str(&'static str),
    EmptyMap,
    /// Any other value, as JSON text (a test parses every one).
    Json(&'static str),
    /// No value: AWS keeps none when the file names none, so one set by hand
    /// is drift (`2 -> null`) and an update leaves it out, which clears it.
    Unset,
}

impl Default {
    pub fn to_json(self) -> Value {
        match self {
            Default::Int(i) => Value::from(i),
            Default::Bool(b) => Value::Bool(b),
            Default::Str(s) => Value::from(s),
            Default::EmptyMap => Value::Object(Map::new()),
            Default::Json(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            Default::Unset => Value::Null,
        }
    }
}

/// A check of one value against AWS's rules; the error completes "must ...".
pub type Check = fn(&Value) -> Result<(), String>;

/// A check across properties; returns (property, message) pairs.
pub type CrossCheck = fn(&Props) -> Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy)]
pub struct Prop {
    pub name: &'static str,
    pub ty: Type,
    pub required: bool,
    pub default: Option<Default>,
    pub force_new: bool,
    pub compare: Compare,
    pub sensitive: bool,
    /// Set by stackctl (a hash of the code), never written in the stack file.
    pub computed: bool,
    /// For a computed value known only after apply: the property that decides
    /// it. While that one is unchanged, the value recorded at the last apply
    /// stands (the code hash of unchanged sources, without building them).
    pub derived_from: Option<&'static str>,
    pub check: Option<Check>,
    /// What the property names, when it names a resource (a reference of
    /// another form or type is refused at validation).
    pub takes: &'static [Target],
    pub doc: &'static str,
}

impl Prop {
    pub const fn new(name: &'static str, ty: Type, doc: &'static str) -> Prop {
        let compare = match ty {
            Type::Policy => Compare::Policy,
            Type::Json => Compare::Json,
            _ => Compare::Exact,
        };
        Prop {
            name,
            ty,
            required: false,
            default: None,
            force_new: false,
            compare,
            sensitive: false,
            computed: false,
            derived_from: None,
            check: None,
            takes: &[],
            doc,
        }
    }
    pub const fn takes(mut self, targets: &'static [Target]) -> Prop {
        self.takes = targets;
        self
    }
    pub const fn required(mut self) -> Prop {
        self.required = true;
        self
    }
    /// The user's tags, on a type whose schema names a tagging family.
    pub const fn tags() -> Prop {
        Prop::new("tags", Type::StringMap, "Tags.").default(Default::EmptyMap)
    }

    pub const fn default(mut self, d: Default) -> Prop {
        self.default = Some(d);
        self
    }
    pub const fn force_new(mut self) -> Prop {
        self.force_new = true;
        self
    }
    pub const fn compare(mut self, c: Compare) -> Prop {
        self.compare = c;
        self
    }
    pub const fn sensitive(mut self) -> Prop {
        self.sensitive = true;
        self
    }
    pub const fn computed(mut self) -> Prop {
        self.computed = true;
        self
    }
    pub const fn derived_from(mut self, prop: &'static str) -> Prop {
        self.derived_from = Some(prop);
        self
    }

    /// Left out of the file, it is compared as absent at AWS.
    pub fn unset_when_absent(&self) -> bool {
        self.default == Some(Default::Unset)
    }

    pub const fn check(mut self, c: Check) -> Prop {
        self.check = Some(c);
        self
    }
}

/// The form in which a value names a resource. A property that takes one
/// form refuses another at validation (`queue_url: ${q.arn}`), and `check`
/// knows `${q.id}` and `${q.url}` name the same queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Arn,
    Url,
    Name,
    /// An id AWS generates (sg-..., i-..., ami-...).
    Id,
}

impl Names {
    pub fn describe(self) -> &'static str {
        match self {
            Names::Arn => "ARN",
            Names::Url => "URL",
            Names::Name => "name",
            Names::Id => "id",
        }
    }
}

/// A resource a property names: of this type (`*`: any) in this form.
pub type Target = (&'static str, Names);

#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub name: &'static str,
    pub doc: &'static str,
}

impl Attr {
    pub const fn new(name: &'static str, doc: &'static str) -> Attr {
        Attr { name, doc }
    }
}

/// The part a type plays in the pipeline's dataflow: how `check`, `simulate`
/// and the diagram find the log groups, alarms, functions... of a stack
/// without naming types. A type that joins the dataflow names its part here
/// and in its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    None,
    LogGroup,
    MetricFilter,
    Alarm,
    Function,
    /// Who may invoke a function (a resource-based policy statement).
    Invocation,
    Topic,
    Subscription,
    Queue,
    QueuePolicy,
    /// An IAM role (what a function runs as).
    Role,
    Policy,
    PolicyAttachment,
    Firewall,
    Instance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Resource,
    /// Read on every plan, never created or destroyed.
    Data,
}

/// The AWS service a type belongs to (what a diagram groups it under).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Logs,
    CloudWatch,
    Sns,
    Sqs,
    Iam,
    Lambda,
    Ec2,
}

impl Service {
    /// A short lowercase key (for ids and colours).
    pub fn key(self) -> &'static str {
        match self {
            Service::Logs => "logs",
            Service::CloudWatch => "cloudwatch",
            Service::Sns => "sns",
            Service::Sqs => "sqs",
            Service::Iam => "iam",
            Service::Lambda => "lambda",
            Service::Ec2 => "ec2",
        }
    }

    /// The name AWS gives it.
    pub fn label(self) -> &'static str {
        match self {
            Service::Logs => "CloudWatch Logs",
            Service::CloudWatch => "CloudWatch",
            Service::Sns => "SNS",
            Service::Sqs => "SQS",
            Service::Iam => "IAM",
            Service::Lambda => "Lambda",
            Service::Ec2 => "EC2",
        }
    }
}

/// Whose calls a type's tags go through: each family's API keys tags by its
/// own handle (the provider passes it), and some families' tags can be read in
/// bulk from the Resource Groups Tagging API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagging {
    /// The type has no tags (and so no ownership tags).
    None,
    /// CloudWatch Logs, by log group name.
    Logs,
    /// CloudWatch, by alarm ARN.
    CloudWatch,
    /// IAM, by role name.
    IamRole,
    /// IAM, by policy ARN.
    IamPolicy,
    /// Lambda, by function ARN.
    Lambda,
    /// SNS, by topic ARN.
    Sns,
    /// SQS, by queue URL.
    Sqs,
    /// EC2, by resource id.
    Ec2,
}

impl Tagging {
    /// Whether the family's tag calls take the resource's ARN (its `arn`
    /// attribute) where its id is something else.
    pub fn by_arn(self) -> bool {
        matches!(self, Tagging::CloudWatch | Tagging::Lambda)
    }

    /// The IAM actions of the family's tag calls: those that read tags, and
    /// those that set and remove them (a create with tags needs them too).
    pub fn actions(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Tagging::None => (&[], &[]),
            Tagging::Logs => (
                &["logs:ListTagsLogGroup"],
                &["logs:TagLogGroup", "logs:UntagLogGroup", "logs:TagResource"],
            ),
            Tagging::CloudWatch => (
                &["cloudwatch:ListTagsForResource"],
                &["cloudwatch:TagResource", "cloudwatch:UntagResource"],
            ),
            Tagging::IamRole => (&["iam:ListRoleTags"], &["iam:TagRole", "iam:UntagRole"]),
            Tagging::IamPolicy => (
                &["iam:ListPolicyTags"],
                &["iam:TagPolicy", "iam:UntagPolicy"],
            ),
            // GetFunction and DescribeInstances answer with the tags.
            Tagging::Lambda => (&[], &["lambda:TagResource", "lambda:UntagResource"]),
            Tagging::Sns => (
                &["sns:ListTagsForResource"],
                &["sns:TagResource", "sns:UntagResource"],
            ),
            Tagging::Sqs => (&["sqs:ListQueueTags"], &["sqs:TagQueue", "sqs:UntagQueue"]),
            Tagging::Ec2 => (&[], &["ec2:CreateTags", "ec2:DeleteTags"]),
        }
    }

    /// The service the Tagging API files these tags under, for families whose
    /// reads would otherwise make a tag call of their own per resource.
    pub fn bulk_service(self) -> Option<&'static str> {
        match self {
            Tagging::Logs => Some("logs"),
            Tagging::CloudWatch => Some("cloudwatch"),
            Tagging::Sns => Some("sns"),
            Tagging::Sqs => Some("sqs"),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Schema {
    pub type_name: &'static str,
    pub kind: Kind,
    pub service: Service,
    pub doc: &'static str,
    pub props: &'static [Prop],
    /// Attributes known only after create (besides the properties themselves).
    pub attrs: &'static [Attr],
    /// Whose calls its tags go through; stackctl adds its ownership tags to
    /// every type that has them (and a `tags` property).
    pub tagging: Tagging,
    /// The properties AWS keys the resource by: two live objects cannot share
    /// all of them. A replacement whose identity differs from the old one's is
    /// created before the old one is deleted.
    pub identity: &'static [&'static str],
    /// AWS refuses to delete it while something uses it (a security group
    /// attached to an instance).
    pub in_use_blocks_delete: bool,
    /// The shape of its `arn` attribute, for reasoning about a stack before
    /// anything exists: `{region}`, `{account}` and property or attribute
    /// names in braces.
    pub arn_format: Option<&'static str>,
    pub cross_check: Option<CrossCheck>,
    /// The shape of its physical id, where the identity properties alone make
    /// it (`{region}`, `{account}` and property names in braces): then a
    /// lookup by identity is a read of that id. `None` where AWS must be
    /// searched (it generates the id).
    pub id_format: Option<&'static str>,
    /// Whether the provider's `read_many` reads many at once (DescribeAlarms
    /// takes 100 names); refresh reads the others one at a time.
    pub batch_read: bool,
    /// The attributes and properties that name the resource, and in which
    /// form; for each form, the first listed is the canonical one.
    pub names: &'static [(&'static str, Names)],
    pub part: Part,
    /// The IAM actions its provider sends, for `stackctl permissions`.
    pub actions: Actions,
}

/// The IAM actions a type's provider sends (its tag calls aside: those are
/// its tagging family's), by what stackctl is doing, and what they act on.
/// A test holds every SDK call in the provider's file to this table.
#[derive(Debug, Clone, Copy)]
pub struct Actions {
    /// Refresh, import and the look before a create.
    pub read: &'static [&'static str],
    pub create: &'static [&'static str],
    pub update: &'static [&'static str],
    pub delete: &'static [&'static str],
    pub on: ActsOn,
}

impl Actions {
    pub const NONE: Actions = Actions {
        read: &[],
        create: &[],
        update: &[],
        delete: &[],
        on: ActsOn::Itself,
    };
}

/// The resource a type's writes are authorized against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActsOn {
    /// Its own ARN (`arn_format`).
    Itself,
    /// The ARN of the resource of this type that this property names: a
    /// log stream's writes are authorized on its log group.
    Parent(&'static str, &'static str),
    /// An id AWS generates (EC2): scoped by the stack's ownership tag.
    Tagged,
}

impl Schema {
    /// What a schema is unless it says otherwise: `..Schema::BASE` after the
    /// fields every type must set (type_name, service, doc, props, identity).
    pub const BASE: Schema = Schema {
        type_name: "",
        kind: Kind::Resource,
        service: Service::Logs,
        doc: "",
        props: &[],
        attrs: &[],
        tagging: Tagging::None,
        identity: &[],
        in_use_blocks_delete: false,
        arn_format: None,
        cross_check: None,
        id_format: None,
        batch_read: false,
        names: &[],
        part: Part::None,
        actions: Actions::NONE,
    };

    pub fn taggable(&self) -> bool {
        self.tagging != Tagging::None
    }

    /// The form in which `${id.attr}` names the resource, if it does.
    pub fn names_as(&self, attr: &str) -> Option<Names> {
        self.names.iter().find(|(a, _)| *a == attr).map(|(_, n)| *n)
    }

    /// The first attribute that names the resource in this form.
    pub fn name_in(&self, form: Names) -> Option<&'static str> {
        self.names.iter().find(|(_, n)| *n == form).map(|(a, _)| *a)
    }

    pub fn prop(&self, name: &str) -> Option<&'static Prop> {
        self.props.iter().find(|p| p.name == name)
    }

    pub fn attr(&self, name: &str) -> Option<&'static Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// Whether `${id.name}` may refer to this name: an attribute or a property.
    pub fn is_referenceable(&self, name: &str) -> bool {
        self.attr(name).is_some() || self.prop(name).is_some()
    }

    /// Fills schema defaults for properties the user left out.
    pub fn with_defaults(&self, props: &Props) -> Props {
        let mut out = props.clone();
        for p in self.props.iter().filter(|p| !p.unset_when_absent()) {
            if let (None, Some(d)) = (out.get(p.name), p.default) {
                out.insert(p.name.to_string(), d.to_json());
            }
        }
        out
    }
}

/// Fills a format's `{field}`s (an `arn_format` or `id_format`) with what
/// `value` gives each; `None` when it gives nothing for one.
pub fn fill_format(format: &str, mut value: impl FnMut(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        out.push_str(&value(&rest[open + 1..close])?);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Marks a value that only AWS can tell, once the resource behind it exists.
const UNKNOWN: &str = "\u{0}(known after apply)";

pub fn unknown() -> Value {
    Value::String(UNKNOWN.to_string())
}

pub fn is_unknown(v: &Value) -> bool {
    v.as_str() == Some(UNKNOWN)
}

pub fn contains_unknown(v: &Value) -> bool {
    match v {
        Value::String(s) => s == UNKNOWN,
        Value::Array(items) => items.iter().any(contains_unknown),
        Value::Object(m) => m.values().any(contains_unknown),
        _ => false,
    }
}

/// Converts a resolved value to the property's type where the conversion is
/// lossless (a `--var` always arrives as a string), or explains the mismatch.
pub fn coerce(ty: &Type, value: Value) -> Result<Value, String> {
    let mismatch = |v: &Value| Err(format!("must be {}, got {}", ty.describe(), json_kind(v)));
    if is_unknown(&value) {
        return Ok(value);
    }
    match (ty, value) {
        (Type::String, Value::String(s)) => Ok(Value::String(s)),
        (Type::String, v @ (Value::Number(_) | Value::Bool(_))) => {
            Ok(Value::String(scalar_text(&v)))
        }
        (Type::Int, Value::Number(n)) if n.is_i64() => Ok(Value::Number(n)),
        (Type::Int, Value::Number(n)) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
            _ => mismatch(&Value::Number(n)),
        },
        (Type::Int, Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) => Ok(Value::from(i)),
            Err(_) => mismatch(&Value::String(s)),
        },
        (Type::Float, Value::Number(n)) => Ok(n.as_f64().map_or(Value::Number(n), Value::from)),
        (Type::Float, Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(f) => Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            Err(_) => mismatch(&Value::String(s)),
        },
        (Type::Bool, Value::Bool(b)) => Ok(Value::Bool(b)),
        (Type::Bool, Value::String(s)) if s == "true" || s == "false" => {
            Ok(Value::Bool(s == "true"))
        }
        (Type::List(inner), Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| coerce(inner, v).map_err(|e| format!("item {}: {e}", i + 1)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (Type::StringMap, Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, Value::String(s))),
                v @ (Value::Number(_) | Value::Bool(_)) => Ok((k, Value::String(scalar_text(&v)))),
                other => Err(format!(
                    "value of `{k}` must be a string, got {}",
                    json_kind(&other)
                )),
            })
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        (Type::Object(props), Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                let Some(p) = props.iter().find(|p| p.name == k) else {
                    return Err(format!(
                        "has unknown key `{k}` (expected one of {})",
                        names(props)
                    ));
                };
                let v = coerce(&p.ty, v).map_err(|e| format!("`{}` {e}", p.name))?;
                if let Some(check) = p.check.filter(|_| !contains_unknown(&v)) {
                    check(&v).map_err(|e| format!("`{}` {e}", p.name))?;
                }
                out.insert(k, v);
            }
            for p in props.iter().filter(|p| p.required) {
                if !out.contains_key(p.name) {
                    return Err(format!("is missing required key `{}`", p.name));
                }
            }
            Ok(Value::Object(out))
        }
        (Type::Policy | Type::Json, Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(_) => Ok(Value::String(s)),
            Err(e) => Err(format!("must be valid JSON: {e}")),
        },
        (Type::Policy | Type::Json, v @ Value::Object(_)) => Ok(v),
        (_, v) => mismatch(&v),
    }
}

pub fn names(props: &[Prop]) -> String {
    props
        .iter()
        .map(|p| format!("`{}`", p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The canonical form two values are compared in.
pub fn normalize(compare: Compare, value: &Value) -> Value {
    match compare {
        Compare::Exact => value.clone(),
        Compare::Json => sort_keys(&parse_if_text(value)),
        Compare::Policy => normalize_policy(&parse_if_text(value), ""),
        Compare::Set => sort_sets(&sort_keys(value)),
        Compare::SetPer(fields) => sort_sets(&sort_keys(&one_per_element(value, fields))),
    }
}

fn one_per_element(value: &Value, fields: &[&str]) -> Value {
    let Value::Array(members) = value else {
        return value.clone();
    };
    let mut out = Vec::new();
    for member in members {
        let Value::Object(m) = member else {
            out.push(member.clone());
            continue;
        };
        let rest: Map<String, Value> = m
            .iter()
            .filter(|(k, _)| !fields.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for field in fields {
            let elements = match m.get(*field) {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|e| Value::Array(vec![e.clone()]))
                    .collect(),
                // A flag that names a source (a group's `self`) is one.
                Some(flag @ Value::Bool(true)) => vec![flag.clone()],
                _ => Vec::new(),
            };
            for element in elements {
                let mut one = rest.clone();
                one.insert(field.to_string(), element);
                out.push(Value::Object(one));
            }
        }
        if fields.iter().all(|f| !m.contains_key(*f)) {
            out.push(member.clone());
        }
    }
    Value::Array(out)
}

/// The form a value is shown in when it changed: as compared, with map keys
/// in order (their order never matters).
pub fn canonical(compare: Compare, value: &Value) -> Value {
    sort_keys(&normalize(compare, value))
}

/// A set's members may themselves hold sets (the CIDR blocks of a rule).
fn sort_sets(value: &Value) -> Value {
    match value {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(sort_sets).collect();
            items.sort_by_key(|v| v.to_string());
            items.dedup();
            Value::Array(items)
        }
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), sort_sets(v))).collect())
        }
        other => other.clone(),
    }
}

pub fn equivalent(compare: Compare, a: &Value, b: &Value) -> bool {
    same(&normalize(compare, a), &normalize(compare, b))
}

/// JSON equality where 5 and 5.0 are the same number (AWS returns doubles).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn parse_if_text(value: &Value) -> Value {
    match value {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| value.clone()),
        other => other.clone(),
    }
}

/// An object with its keys in order, each value mapped by `f(key, value)`.
fn by_key(m: &serde_json::Map<String, Value>, f: impl Fn(&str, &Value) -> Value) -> Value {
    let mut entries: Vec<_> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.clone(), f(k, v)))
            .collect(),
    )
}

fn normalize_policy_at(key: &str, value: &Value) -> Value {
    normalize_policy(value, key)
}

fn sort_keys(value: &Value) -> Value {
    match value {
        Value::Object(m) => by_key(m, |_, v| sort_keys(v)),
        Value::Array(items) => Value::Array(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// IAM evaluates `"Action": "x"` and `"Action": ["x"]` alike, ignores the order of
/// values in a list and of statements, and AWS hands back scalars as strings.
fn normalize_policy(value: &Value, key: &str) -> Value {
    match value {
        Value::Object(_) if key == "Statement" => Value::Array(vec![normalize_policy(value, "")]),
        Value::Object(m) => by_key(m, normalize_policy_at),
        Value::Array(items) => {
            let item_key = if key == "Statement" { "" } else { key };
            let mut items: Vec<Value> = items
                .iter()
                .map(|v| normalize_policy(v, item_key))
                .collect();
            items.sort_by_key(|v| v.to_string());
            items.dedup();
            if items.len() == 1 && key != "Statement" {
                items.pop().unwrap_or(Value::Null)
            } else {
                Value::Array(items)
            }
        }
        Value::Bool(_) | Value::Number(_) => Value::String(value.to_string()),
        other => other.clone(),
    }
}

/// `Version` and `Statement` are what AWS requires of every policy document.
pub fn check_policy_document(value: &Value) -> Result<(), String> {
    let doc = parse_if_text(value);
    let Value::Object(m) = &doc else {
        return Err("must be a JSON object with `Version` and `Statement`".into());
    };
    match m.get("Version").and_then(Value::as_str) {
        Some("2012-10-17") | Some("2008-10-17") => {}
        Some(other) => return Err(format!("has Version `{other}`; use \"2012-10-17\"")),
        None => return Err("must have `Version: \"2012-10-17\"`".into()),
    }
    let statements = match m.get("Statement") {
        Some(Value::Array(s)) if !s.is_empty() => s.clone(),
        Some(s @ Value::Object(_)) => vec![s.clone()],
        _ => return Err("must have a non-empty `Statement`".into()),
    };
    for (i, st) in statements.iter().enumerate() {
        let n = i + 1;
        let Value::Object(st) = st else {
            return Err(format!("statement {n} must be a map"));
        };
        match st.get("Effect").and_then(Value::as_str) {
            Some("Allow") | Some("Deny") => {}
            _ => {
                return Err(format!(
                    "statement {n} must have `Effect: Allow` or `Effect: Deny`"
                ))
            }
        }
        if !st.contains_key("Action") && !st.contains_key("NotAction") {
            return Err(format!("statement {n} must have `Action` or `NotAction`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_key_order_and_whitespace_do_not_matter() {
        let a = json!(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:SendMessage","Resource":"*"}]}"#
        );
        let b = json!({"Statement": [{"Resource": "*", "Action": "sqs:SendMessage", "Effect": "Allow"}],
                       "Version": "2012-10-17"});
        assert!(equivalent(Compare::Policy, &a, &b));
        let spaced = json!("{ \"Version\" : \"2012-10-17\",\n  \"Statement\" : { \"Effect\":\"Allow\", \"Action\":\"sqs:SendMessage\", \"Resource\":\"*\" } }");
        assert!(equivalent(Compare::Policy, &a, &spaced));
    }

    #[test]
    fn policy_one_item_list_equals_scalar_and_order_is_ignored() {
        let a = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["ec2:StopInstances", "ec2:StartInstances"], "Resource": ["arn:x"]}]});
        let b = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["ec2:StartInstances", "ec2:StopInstances"], "Resource": "arn:x"}]});
        assert!(equivalent(Compare::Policy, &a, &b));
    }

    #[test]
    fn policy_difference_in_meaning_is_seen() {
        let a = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sns:Publish", "Resource": "arn:a"}]});
        let b = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sns:Publish", "Resource": "arn:b"}]});
        assert!(!equivalent(Compare::Policy, &a, &b));
    }

    #[test]
    fn policy_condition_scalars_compare_as_text() {
        let a = json!({"Statement": [{"Condition": {"Bool": {"aws:SecureTransport": false}}}]});
        let b = json!({"Statement": [{"Condition": {"Bool": {"aws:SecureTransport": "false"}}}]});
        assert!(equivalent(Compare::Policy, &a, &b));
    }

    #[test]
    fn json_compare_ignores_key_order_not_values() {
        assert!(equivalent(
            Compare::Json,
            &json!(r#"{"b":[1],"a":"x"}"#),
            &json!({"a": "x", "b": [1]})
        ));
        assert!(!equivalent(
            Compare::Json,
            &json!(r#"{"a":"x"}"#),
            &json!({"a": "y"})
        ));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(equivalent(
            Compare::Exact,
            &json!({"t": 5}),
            &json!({"t": 5.0})
        ));
        assert!(!equivalent(Compare::Exact, &json!(5), &json!(6)));
    }

    #[test]
    fn sets_of_sets_ignore_inner_order() {
        let a = json!([{"protocol": "tcp", "cidr_blocks": ["b", "a"]}, {"protocol": "udp", "cidr_blocks": ["c"]}]);
        let b = json!([{"cidr_blocks": ["c"], "protocol": "udp"}, {"protocol": "tcp", "cidr_blocks": ["a", "b"]}]);
        assert!(equivalent(Compare::Set, &a, &b));
    }

    /// A rule with two CIDR blocks is the two rules AWS answers with, and a
    /// rule it answers with that the other side lacks is a difference.
    #[test]
    fn a_member_with_several_sources_is_one_member_per_source() {
        let per = Compare::SetPer(&["cidr_blocks", "ipv6_cidr_blocks"]);
        let written =
            json!([{"protocol": "tcp", "cidr_blocks": ["a", "b"], "ipv6_cidr_blocks": ["c"]}]);
        let answered = json!([
            {"protocol": "tcp", "ipv6_cidr_blocks": ["c"]},
            {"protocol": "tcp", "cidr_blocks": ["b"]},
            {"protocol": "tcp", "cidr_blocks": ["a"]},
        ]);
        assert!(equivalent(per, &written, &answered));
        assert!(!equivalent(Compare::Set, &written, &answered));
        let by_hand =
            json!([{"protocol": "tcp", "cidr_blocks": ["a", "b"], "ipv6_cidr_blocks": ["c", "d"]}]);
        assert!(!equivalent(per, &by_hand, &answered));
    }

    /// `self: true` beside a CIDR block is two sources: AWS answers the group
    /// itself as a rule of its own.
    #[test]
    fn a_flag_that_names_a_source_is_one_member_of_its_own() {
        let per = Compare::SetPer(&["cidr_blocks", "self"]);
        let written = json!([{"protocol": "tcp", "self": true, "cidr_blocks": ["a"]}]);
        let answered = json!([
            {"protocol": "tcp", "cidr_blocks": ["a"]},
            {"protocol": "tcp", "self": true},
        ]);
        assert!(equivalent(per, &written, &answered));
        let without = json!([{"protocol": "tcp", "self": false, "cidr_blocks": ["a"]}]);
        assert!(!equivalent(per, &without, &answered));
    }

    #[test]
    fn set_compare_ignores_order() {
        assert!(equivalent(
            Compare::Set,
            &json!(["b", "a"]),
            &json!(["a", "b"])
        ));
        assert!(!equivalent(
            Compare::Exact,
            &json!(["b", "a"]),
            &json!(["a", "b"])
        ));
    }

    #[test]
    fn coerce_converts_var_strings_and_rejects_garbage() {
        assert_eq!(coerce(&Type::Int, json!("60")).unwrap(), json!(60));
        assert_eq!(coerce(&Type::Bool, json!("true")).unwrap(), json!(true));
        assert_eq!(coerce(&Type::String, json!(5)).unwrap(), json!("5"));
        assert_eq!(
            coerce(&Type::Int, json!("sixty")).unwrap_err(),
            "must be an integer, got a string"
        );
        assert!(coerce(&Type::Policy, json!("{not json"))
            .unwrap_err()
            .starts_with("must be valid JSON"));
    }

    #[test]
    fn policy_document_needs_version_and_statement() {
        assert!(check_policy_document(&json!({"Statement": []}))
            .unwrap_err()
            .contains("Version"));
        assert!(check_policy_document(&json!({"Version": "2012-10-17"}))
            .unwrap_err()
            .contains("Statement"));
        let no_effect = json!({"Version": "2012-10-17", "Statement": [{"Action": "x"}]});
        assert!(check_policy_document(&no_effect)
            .unwrap_err()
            .contains("Effect"));
        let ok = json!(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"x","Resource":"*"}}"#
        );
        assert!(check_policy_document(&ok).is_ok());
    }
}

//! The in-memory cloud of the simulation: objects by physical id, calls
//! made of attempts under faults drawn from the seed, and the provider that
//! serves the model's types from their schemas through it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use crate::providers::reach::Ledger;
use crate::providers::{
    split_tags, Attrs, BatchResult, Cause, Created, Ctx, HasSchema, Observed, Provider,
    ProviderError, Reach, ReadResult, Resource, Update,
};
use crate::schema::{fill_format, Props, Schema};

pub const REGION: &str = "us-east-2";
pub const ACCOUNT: &str = "123456789012";

/// The types the model cloud serves.
pub(super) const TYPES: &[&str] = &[
    "aws_sns_topic",
    "aws_sqs_queue",
    "aws_cloudwatch_log_group",
    "aws_cloudwatch_log_metric_filter",
];

/// What a create meets when the object already exists, as each API answers.
fn on_existing(type_name: &str, existing: &Props, wanted: &Props) -> Result<(), ProviderError> {
    let without_tags = |p: &Props| {
        let mut p = p.clone();
        p.remove("tags");
        p
    };
    let same = match type_name {
        // CreateTopic returns the topic it has when nothing differs.
        "aws_sns_topic" => existing == wanted,
        // CreateQueue returns the queue when its attributes are the same.
        "aws_sqs_queue" => without_tags(existing) == without_tags(wanted),
        // PutMetricFilter replaces a filter of the same name (create does
        // not reach here).
        "aws_cloudwatch_log_metric_filter" => true,
        _ => false,
    };
    match same {
        true => Ok(()),
        false => Err(answered(
            "ResourceAlreadyExistsException",
            "the resource already exists".into(),
        )),
    }
}

/// How a faulted run's calls fail, each per mille. Whether a call fails is
/// drawn from the seed, the run and the call itself (its kind and object,
/// and how many such calls came before it in the run), not from its place
/// among all calls: the order in which the engine starts independent steps
/// does not change which calls fail, so a seed replays exactly. A call is
/// made of attempts, retried as the SDK retries them (providers::loader):
/// each attempt can fail on its own, and the call's error is judged over
/// all of them by the same ledger the SDK's interceptor keeps (reach.rs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Of calls: every attempt finds no connection (nothing reaches AWS).
    pub down: u64,
    /// Of attempts: no connection can be made (retried).
    pub refuse: u64,
    /// Of attempts: AWS acts and the answer is lost (retried).
    pub lose: u64,
    /// Of lost answers: no connection can be made for the rest of the call
    /// (the fault of Trust II's first item).
    pub outage: u64,
    /// Of attempts: answered ThrottlingException (retried).
    pub throttle: u64,
    /// Of calls: the process dies at the call (after it acted, or before).
    pub crash: u64,
    /// Of calls: the process stalls before the call (a laptop asleep) until
    /// the simulation wakes it.
    pub stall: u64,
    /// Reads miss an object created in this run for up to this many more
    /// calls to the cloud (eventual consistency; writes see it at once, and
    /// a later run sees everything: runs are further apart than that).
    pub lag: u64,
    /// Of requests to the in-memory S3 that keeps the state (s3.rs): no
    /// connection, SlowDown, or S3 acts and the answer is lost (then, at
    /// times, no connection for the next few requests). The SDK retries.
    pub s3: u64,
    /// Of attempts: the network's latency, up to this many ms, drawn for
    /// each attempt, so that steps finish, and the steps they free start,
    /// in an order drawn from the seed.
    pub slow: u64,
}

/// The rules of the layer between the engine and AWS (the SDK interceptor's)
/// the simulated calls follow: today's, or an old one a test puts back to
/// see the simulation catch the defect it had.
#[derive(Clone, Copy)]
pub(super) struct Rules {
    /// How a failed call's attempts are judged.
    pub(super) judge: fn(&Ledger, bool) -> Option<Reach>,
    /// Whether each attempt asks the lease's gate first.
    pub(super) gated: bool,
}

impl Rules {
    pub(super) const TODAYS: Rules = Rules {
        judge: Ledger::judge,
        gated: true,
    };
}

/// The SDK's attempts per call, as `providers::loader` configures it.
pub(super) const MAX_ATTEMPTS: usize = 6;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Object {
    pub(super) type_name: String,
    pub(super) props: Props,
    /// The cloud's call count from which reads see it.
    pub(super) visible_at: u64,
}

impl Cloud {
    /// The object as a read at `now` sees it: not at all while it is new.
    fn seen<'a>(&self, o: Option<&'a Object>, now: u64) -> Option<&'a Object> {
        let unseen = o.is_some_and(|o| o.visible_at > now);
        if unseen {
            self.unseen
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        o.filter(|_| !unseen)
    }

    /// The faults injected so far.
    pub(super) fn counts(&self) -> Counts {
        let mut counts = self.lock().injected;
        counts[Injected::Unseen as usize] = self.unseen.load(std::sync::atomic::Ordering::Relaxed);
        counts
    }
}

pub(super) struct Inner {
    pub(super) objects: BTreeMap<String, Object>,
    pub(super) seed: u64,
    /// Counts the runs: each draws afresh.
    pub(super) run: u64,
    pub(super) faults: Faults,
    /// Calls so far in this run, by what they are.
    pub(super) seen: std::collections::HashMap<String, u64>,
    /// Whether this run's process has died or stalled (once a run).
    pub(super) dead: bool,
    /// Whether it stalled (not died), and was woken.
    pub(super) stalled: bool,
    pub(super) woken: bool,
    pub(super) rules: Rules,
    /// The network's latency, waited on the paused clock before each attempt.
    pub(super) latency: std::time::Duration,
    /// Attempts made, for the benchmark.
    pub(super) attempts: u64,
    pub(super) injected: Counts,
}

impl Inner {
    fn draw(&self, thing: impl std::hash::Hash) -> crate::rng::Rng {
        super::draw(self.seed, self.run, thing)
    }

    pub(super) fn count(&mut self, kind: Injected) {
        self.injected[kind as usize] += 1;
    }
}

/// The in-memory cloud: objects by physical id.
pub struct Cloud {
    inner: Mutex<Inner>,
    /// Told when a call kills or stalls the process, and when it is woken.
    crashed: tokio::sync::Notify,
    woken: tokio::sync::Notify,
    /// Reads that missed a new object (counted outside the lock the reads
    /// run under).
    unseen: std::sync::atomic::AtomicU64,
}

/// What the faults did: what a range of seeds exercised (printed by the
/// test).
#[derive(Clone, Copy)]
pub(super) enum Injected {
    Refused,
    Lost,
    Outage,
    Throttled,
    Killed,
    Stalled,
    /// Reads that missed an object not yet visible to them.
    Unseen,
    /// Requests to the state's S3 that failed (counted by s3.rs).
    S3,
}

/// Faults injected, by `Injected`.
pub type Counts = [u64; 8];

/// How one attempt of a call ends, AWS's own answer aside.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Attempt {
    /// AWS acts and answers.
    Through,
    NoConnection,
    /// AWS acts; the answer is lost.
    Lost,
    /// AWS answers ThrottlingException without acting.
    Throttled,
}

/// What a call meets: the process dying at it, or its attempts.
enum Fate {
    Crash { acted: bool },
    Stall,
    Attempts(Vec<Attempt>),
}

impl Cloud {
    pub fn new(seed: u64) -> Arc<Cloud> {
        Arc::new(Cloud {
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                seed,
                run: 0,
                faults: Faults::default(),
                seen: Default::default(),
                dead: false,
                stalled: false,
                woken: false,
                rules: Rules::TODAYS,
                latency: std::time::Duration::ZERO,
                attempts: 0,
                injected: Counts::default(),
            }),
            crashed: tokio::sync::Notify::new(),
            woken: tokio::sync::Notify::new(),
            unseen: Default::default(),
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut inner = self.lock();
        inner.faults = faults;
        inner.run += 1;
        inner.seen.clear();
        inner.dead = false;
        inner.stalled = false;
        inner.woken = false;
        for o in inner.objects.values_mut() {
            o.visible_at = 0;
        }
    }

    /// The cloud's clock for reads: calls made so far.
    fn now(&self) -> u64 {
        self.lock().attempts
    }

    /// How many more calls the reads of an object this call creates miss it.
    fn lag(&self, what: &str) -> u64 {
        let inner = self.lock();
        if inner.faults.lag == 0 {
            return 0;
        }
        inner
            .draw(("lag", what))
            .below(inner.faults.lag as usize + 1) as u64
    }

    fn fate(&self, what: &str) -> Fate {
        let mut inner = self.lock();
        let n = {
            let seen = inner.seen.entry(what.to_string()).or_default();
            *seen += 1;
            *seen
        };
        let mut draw = inner.draw((what, n));
        let f = inner.faults;
        if draw.per_mille(f.crash) && !inner.dead {
            inner.dead = true;
            inner.count(Injected::Killed);
            return Fate::Crash {
                acted: draw.per_mille(500),
            };
        }
        if draw.per_mille(f.stall) && !inner.dead {
            (inner.dead, inner.stalled) = (true, true);
            inner.count(Injected::Stalled);
            return Fate::Stall;
        }
        if draw.per_mille(f.down) {
            inner.count(Injected::Refused);
            return Fate::Attempts(vec![Attempt::NoConnection; MAX_ATTEMPTS]);
        }
        let mut attempts = Vec::new();
        let mut outage = false;
        while attempts.len() < MAX_ATTEMPTS {
            let attempt = if outage {
                Attempt::NoConnection
            } else if draw.per_mille(f.refuse) {
                inner.count(Injected::Refused);
                Attempt::NoConnection
            } else if draw.per_mille(f.lose) {
                inner.count(Injected::Lost);
                outage = draw.per_mille(f.outage);
                if outage {
                    inner.count(Injected::Outage);
                }
                Attempt::Lost
            } else if draw.per_mille(f.throttle) {
                inner.count(Injected::Throttled);
                Attempt::Throttled
            } else {
                Attempt::Through
            };
            attempts.push(attempt);
            if attempt == Attempt::Through {
                break;
            }
        }
        Fate::Attempts(attempts)
    }

    /// Runs `act` under the call's fate: its attempts, each of which may act,
    /// until one is answered or none is left; or no answer ever (the process
    /// is dropped while it waits). An answered error is not retried.
    async fn call<T>(
        &self,
        cx: &Ctx,
        what: &str,
        mut act: impl FnMut(&mut BTreeMap<String, Object>) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let attempts = match self.fate(what) {
            Fate::Stall => {
                self.crashed.notify_waiters();
                self.until_woken().await;
                vec![Attempt::Through]
            }
            Fate::Crash { acted } => {
                if acted {
                    let _ = act(&mut self.lock().objects);
                }
                self.crashed.notify_waiters();
                std::future::pending::<()>().await;
                unreachable!("a dropped run does not resume")
            }
            Fate::Attempts(attempts) => attempts,
        };
        let (rules, latency, slow, mut pace) = {
            let inner = self.lock();
            let n = inner.seen.get(what).copied().unwrap_or_default();
            let pace = inner.draw(("slow", what, n));
            (inner.rules, inner.latency, inner.faults.slow, pace)
        };
        let mut ledger = Ledger::default();
        let mut last = Attempt::NoConnection;
        for attempt in attempts {
            let jitter = std::time::Duration::from_millis(pace.below(slow as usize + 1) as u64);
            if !(latency + jitter).is_zero() {
                tokio::time::sleep(latency + jitter).await;
            }
            self.lock().attempts += 1;
            // The interceptor asks the gate before each attempt is sent.
            let asked = match rules.gated {
                true => cx.gate_allows(),
                false => Ok(()),
            };
            if let Err(e) = asked {
                return Err(ProviderError::withheld(e));
            }
            ledger.sending();
            last = attempt;
            match attempt {
                Attempt::NoConnection | Attempt::Throttled => ledger.attempted(false),
                Attempt::Lost => {
                    let _ = act(&mut self.lock().objects);
                    ledger.attempted(true);
                }
                Attempt::Through => {
                    let answer = act(&mut self.lock().objects);
                    // An error answered here is a 4xx: nothing was done.
                    ledger.attempted(answer.is_ok());
                    return answer;
                }
            }
        }
        Err(match last {
            Attempt::Throttled => answered(
                "ThrottlingException",
                format!("{what}: Rate exceeded (fault)"),
            ),
            Attempt::Lost => error(
                (rules.judge)(&ledger, false).unwrap_or(Reach::Unknown),
                format!("{what}: answer lost (fault)"),
            ),
            _ => error(
                (rules.judge)(&ledger, true).unwrap_or(Reach::NotSent),
                format!("{what}: no connection (fault)"),
            ),
        })
    }

    async fn until_woken(&self) {
        loop {
            let woken = self.woken.notified();
            if self.lock().woken {
                return;
            }
            woken.await;
        }
    }

    /// Wakes the stalled process (the next time its runtime is driven).
    pub(super) fn wake(&self) {
        self.lock().woken = true;
        self.woken.notify_waiters();
    }

    /// Waits until a call of this run kills or stalls the process.
    pub async fn crashed(&self) {
        loop {
            let notified = self.crashed.notified();
            if self.lock().dead {
                return;
            }
            notified.await;
        }
    }

    /// Every object, for the invariants.
    pub(super) fn objects(&self) -> BTreeMap<String, Object> {
        self.lock().objects.clone()
    }

    /// An object made by someone else, which no run may touch.
    pub fn put_foreign(&self, type_name: &str, name: &str) {
        let schema = schema_of(type_name);
        let props: Props = [("name".to_string(), Value::from(name))]
            .into_iter()
            .collect();
        let id = id_of(schema, &props);
        let mut tagged = props;
        tagged.insert(
            "tags".into(),
            json!({"stackctl:stack": "someone-else", "stackctl:id": name}),
        );
        let object = Object {
            type_name: type_name.to_string(),
            props: tagged,
            visible_at: 0,
        };
        self.lock().objects.insert(id, object);
    }
}

/// AWS's answer with an error code (a 4xx: it did nothing).
fn answered(code: &str, message: String) -> ProviderError {
    ProviderError {
        cause: Cause::Answered(Some(code.to_string())),
        message: format!("{code}: {message}"),
        reach: Reach::Refused,
        created: None,
    }
}

fn error(reach: Reach, message: String) -> ProviderError {
    let cause = match reach {
        Reach::Unknown => Cause::Transport,
        _ => Cause::Answered(None),
    };
    ProviderError {
        cause,
        message,
        reach,
        created: None,
    }
}

fn schema_of(type_name: &str) -> &'static Schema {
    crate::providers::lookup(type_name)
        .map(|p| p.schema())
        .expect("a registered type")
}

/// The physical id: the schema's id format, else a model id by identity.
fn id_of(schema: &Schema, props: &Props) -> String {
    let field = |f: &str| match f {
        "region" => Some(REGION.to_string()),
        "account" => Some(ACCOUNT.to_string()),
        _ => props.get(f).and_then(Value::as_str).map(str::to_string),
    };
    let identity = || {
        let parts: Vec<String> = schema.identity.iter().filter_map(|k| field(k)).collect();
        format!("model:{}:{}", schema.type_name, parts.join("/"))
    };
    schema
        .id_format
        .and_then(|f| fill_format(f, field))
        .unwrap_or_else(identity)
}

fn attrs_of(schema: &Schema, id: &str, props: &Props) -> Attrs {
    let arn = schema.arn_format.and_then(|f| {
        fill_format(f, |k| match k {
            "region" => Some(REGION.to_string()),
            "account" => Some(ACCOUNT.to_string()),
            _ => props.get(k).and_then(Value::as_str).map(str::to_string),
        })
    });
    let mut attrs = Map::new();
    for a in schema.attrs {
        let by_name = schema.names_as(a.name) == Some(crate::schema::Names::Name);
        let value = match a.name {
            "arn" => arn.clone().unwrap_or_else(|| id.to_string()),
            _ if by_name => props
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(id)
                .to_string(),
            _ => id.to_string(),
        };
        attrs.insert(a.name.to_string(), Value::from(value));
    }
    attrs
}

/// A type's calls served by the model cloud.
struct Model(&'static Schema);

impl HasSchema for Model {
    fn schema(&self) -> &'static Schema {
        self.0
    }
}

fn cloud(cx: &Ctx) -> &Cloud {
    cx.model.as_deref().expect("a model context")
}

fn observed(schema: &Schema, id: &str, o: &Object) -> Observed {
    let mut props = o.props.clone();
    let tags = crate::providers::string_map(props.get("tags"));
    let (user, owner) = split_tags(tags);
    if schema.taggable() {
        props.insert("tags".into(), user);
    }
    Observed {
        attrs: attrs_of(schema, id, &o.props),
        props,
        owner,
    }
}

#[async_trait]
impl Provider for Model {
    async fn create(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Created, ProviderError> {
        let schema = self.0;
        let mut props = r.props.clone();
        if schema.taggable() {
            let tags = r.tags_with_ownership(cx).into_iter();
            let tags = tags.map(|(k, v)| (k, Value::from(v))).collect();
            props.insert("tags".into(), Value::Object(tags));
        }
        let id = id_of(schema, &props);
        let attrs = attrs_of(schema, &id, &props);
        let what = format!("create {id}");
        let upsert = schema.type_name == "aws_cloudwatch_log_metric_filter";
        let visible_at = cloud(cx).now() + cloud(cx).lag(&what);
        cloud(cx)
            .call(cx, &what, |objects| {
                if let Some(o) = objects.get(&id).filter(|_| !upsert) {
                    return on_existing(schema.type_name, &o.props, &props);
                }
                let object = Object {
                    type_name: schema.type_name.to_string(),
                    props: props.clone(),
                    visible_at,
                };
                objects.insert(id.clone(), object);
                Ok(())
            })
            .await?;
        Ok(Created {
            physical_id: id,
            attrs,
        })
    }

    async fn read(&self, cx: &Ctx, id: &str) -> ReadResult {
        let schema = self.0;
        let what = format!("read {id}");
        let now = cloud(cx).now();
        cloud(cx)
            .call(cx, &what, |objects| {
                let seen = cloud(cx).seen(objects.get(id), now);
                Ok(seen.map(|o| observed(schema, id, o)))
            })
            .await
    }

    async fn update(&self, cx: &Ctx, u: &Update<'_>) -> Result<Attrs, ProviderError> {
        let schema = self.0;
        let id = u.id.to_string();
        let what = format!("update {id}");
        let (changed, desired) = (u.changed.to_vec(), u.r.props.clone());
        let ownership = u.r.tags_with_ownership(cx);
        cloud(cx)
            .call(cx, &what, |objects| {
                let Some(o) = objects.get_mut(&id) else {
                    return Err(answered(
                        "ResourceNotFoundException",
                        format!("{id} does not exist"),
                    ));
                };
                for &k in &changed {
                    let value = match k {
                        "tags" => Value::Object(
                            ownership
                                .iter()
                                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                                .collect(),
                        ),
                        _ => desired.get(k).cloned().unwrap_or(Value::Null),
                    };
                    o.props.insert(k.to_string(), value);
                }
                Ok(attrs_of(schema, &id, &o.props))
            })
            .await
    }

    async fn delete(&self, cx: &Ctx, id: &str, _props: &Props) -> Result<(), ProviderError> {
        let what = format!("delete {id}");
        cloud(cx)
            .call(cx, &what, |objects| {
                if let Some(gone) = objects.remove(id) {
                    cascade(objects, &gone);
                }
                Ok(())
            })
            .await
    }

    async fn read_many(&self, cx: &Ctx, ids: &[String]) -> BatchResult {
        // As DescribeLogGroups by the names' prefix: a page of 50 a call,
        // one page after another.
        let schema = self.0;
        let mut found = std::collections::HashMap::new();
        for page in ids.chunks(50) {
            let what = format!("describe {}", page[0]);
            let now = cloud(cx).now();
            let read = cloud(cx)
                .call(cx, &what, |objects| {
                    let observe = |id: &String| {
                        let seen = cloud(cx).seen(objects.get(id), now);
                        seen.map(|o| observed(schema, id, o))
                    };
                    Ok(page
                        .iter()
                        .map(|id| (id.clone(), observe(id)))
                        .collect::<Vec<_>>())
                })
                .await?;
            found.extend(read);
        }
        Ok(found)
    }

    /// What a create of these properties would make, whoever made it.
    async fn find(&self, cx: &Ctx, r: &Resource<'_>) -> Result<Option<String>, ProviderError> {
        let id = id_of(self.0, r.props);
        let what = format!("find {id}");
        let now = cloud(cx).now();
        cloud(cx)
            .call(cx, &what, |objects| {
                let seen = cloud(cx).seen(objects.get(&id), now);
                Ok(seen.map(|_| id.clone()))
            })
            .await
    }
}

/// Deleting a log group deletes its metric filters, as AWS does.
fn cascade(objects: &mut BTreeMap<String, Object>, gone: &Object) {
    if gone.type_name == "aws_cloudwatch_log_group" {
        let group = &gone.props["name"];
        objects.retain(|_, o| {
            o.type_name != "aws_cloudwatch_log_metric_filter" || &o.props["log_group_name"] != group
        });
    }
}

/// The model's provider of `type_name`.
pub fn provider(type_name: &str) -> Option<&'static dyn Provider> {
    static MODELS: OnceLock<Vec<&'static Model>> = OnceLock::new();
    let models = MODELS.get_or_init(|| {
        TYPES
            .iter()
            .map(|t| &*Box::leak(Box::new(Model(schema_of(t)))))
            .collect()
    });
    models
        .iter()
        .find(|m| m.0.type_name == type_name)
        .map(|m| *m as &dyn Provider)
}

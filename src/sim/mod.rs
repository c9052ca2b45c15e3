//! `stackctl simulate`: drives log lines through the stack's pipeline, hop by
//! hop, on a virtual clock the lines' timestamps define: metric filters match
//! them with CloudWatch Logs' semantics, alarms evaluate the metric every
//! minute with CloudWatch's rules, and each transition's actions run as AWS
//! would run them, only where `check` proves the wiring allows it. A function
//! action runs the function's built code under a local Lambda Runtime API
//! with the payload CloudWatch sends, its deployed environment and its
//! timeout, so its own calls reach the endpoint of the standard configuration
//! chain; what it publishes is then read from the queues subscribed to the
//! topic.

pub mod alarm;
pub mod filter;
pub mod runtime;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::check::Report;
use crate::providers::{aws, Ctx};
use crate::schema::{Part, Props};
use crate::state::State;
use crate::validate::Validated;

use alarm::{Comparison, Missing, Statistic};

/// One log line, as `aws logs put-log-events` takes it.
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub timestamp: i64,
    pub message: String,
    /// The log group it goes to; every filter's group when not given.
    pub log_group: Option<String>,
}

/// What stops a simulation before it starts.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("line {line}: {problem}")]
    Events { line: usize, problem: String },
    #[error("no events: give JSON Lines of {{\"timestamp\": epoch-ms, \"message\": \"...\"}}")]
    NoEvents,
    #[error("`{id}`: pattern: {problem}")]
    Pattern { id: String, problem: String },
}

/// Why the function could not be run locally (told on its invocation).
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("runtime {0}: stackctl runs custom-runtime (provided.*) functions only")]
    Runtime(String),
    #[error("the function has no code (`source` or `filename`)")]
    NoCode,
    #[error("the code has no `bootstrap`")]
    NoBootstrap,
    #[error("{0}")]
    Build(String),
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot run the function's bootstrap: {0}")]
    Spawn(std::io::Error),
    #[error("no answer within the function's timeout ({0}s)")]
    Timeout(u64),
}

/// Parses JSON Lines of `{"timestamp": epoch-ms, "message": "..."}`.
pub fn parse_events(text: &str) -> Result<Vec<LogEvent>, SimError> {
    let mut out = Vec::new();
    let lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    for (n, line) in lines {
        let problem = |problem: String| SimError::Events {
            line: n + 1,
            problem,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| problem(format!("not JSON: {e}")))?;
        let timestamp = v["timestamp"]
            .as_i64()
            .ok_or_else(|| problem("`timestamp` must be epoch milliseconds".into()))?;
        let message = v["message"]
            .as_str()
            .ok_or_else(|| problem("`message` must be a string".into()))?
            .to_string();
        let log_group = v["logGroup"].as_str().map(str::to_string);
        out.push(LogEvent {
            timestamp,
            message,
            log_group,
        });
    }
    out.sort_by_key(|e| e.timestamp);
    if out.is_empty() {
        return Err(SimError::NoEvents);
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    pub t_ms: i64,
    pub resource: String,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    pub function: String,
    pub alarm: String,
    pub ok: bool,
    pub response: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// When it was delivered, on the virtual clock.
    pub t_ms: i64,
    pub queue: String,
    /// SNS's envelope, its `Timestamp` the virtual time of the delivery.
    pub body: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub timeline: Vec<Hop>,
    pub alarms: BTreeMap<String, alarm::State>,
    pub invocations: Vec<Invocation>,
    pub messages: Vec<Message>,
}

pub struct Options {
    /// Let actions reach real AWS (no endpoint override).
    pub live: bool,
}

/// A resource as deployed (its state record) or, before apply, as written.
struct Deployed {
    props: Props,
    attrs: serde_json::Map<String, Value>,
    physical_id: Option<String>,
}

/// The stack's metric filters and alarms with their deployed settings: what
/// the log lines go through before any action runs. Pure: no AWS call.
struct Pipeline<'a> {
    v: &'a Validated,
    resources: BTreeMap<String, Deployed>,
    /// The virtual clock's origin: the minute of the first event.
    t0: i64,
}

/// An alarm as evaluated.
struct AlarmSpec {
    id: String,
    metric: MetricKey,
    rule: alarm::Rule,
    actions_enabled: bool,
}

type MetricKey = (String, String, BTreeMap<String, String>);
type Samples = BTreeMap<MetricKey, Vec<(i64, f64)>>;

fn text(p: &Props, k: &str) -> String {
    p.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// One state change of one alarm, in the order the timeline tells them.
struct Transition {
    alarm: usize,
    change: alarm::Change,
}

impl<'a> Pipeline<'a> {
    /// Each resource as the state records it, or as written before apply.
    fn new(v: &'a Validated, state: &State, region: String, events: &[LogEvent]) -> Pipeline<'a> {
        let values = crate::model::StackValues::offline(v, Some(region), None);
        let resources = v
            .stack
            .decls
            .values()
            .filter(|d| !d.is_data)
            .map(|d| {
                let deployed = match state.resources.get(&d.id).filter(|r| !r.is_pending()) {
                    Some(rec) => Deployed {
                        props: rec.props.clone(),
                        attrs: rec.attrs.clone(),
                        physical_id: rec.physical_id.clone(),
                    },
                    None => Deployed {
                        props: crate::model::declared_props(v, &d.id, &values, &|_, _| None),
                        attrs: Default::default(),
                        physical_id: None,
                    },
                };
                (d.id.clone(), deployed)
            })
            .collect();
        let t0 = events
            .first()
            .map_or(0, |e| e.timestamp - e.timestamp.rem_euclid(60_000));
        Pipeline { v, resources, t0 }
    }

    /// The resources that play this part, in the stack file's order.
    fn of_part(&self, part: Part) -> Vec<String> {
        let decls = self.v.stack.decls.values();
        let mut ids: Vec<&crate::config::Decl> = decls
            .filter(|d| self.v.schema(&d.id).part == part)
            .collect();
        ids.sort_by_key(|d| d.span.line);
        ids.into_iter().map(|d| d.id.clone()).collect()
    }

    fn hop(&self, t: i64, resource: &str, kind: &str, detail: String) -> Hop {
        Hop {
            t_ms: t - self.t0,
            resource: resource.to_string(),
            kind: kind.to_string(),
            detail,
        }
    }

    /// Runs every event through the metric filters of its log group: the
    /// metrics' samples, and a hop per match.
    fn filter(&self, events: &[LogEvent]) -> Result<(Samples, Vec<Hop>), SimError> {
        let mut samples = Samples::new();
        let mut hops = Vec::new();
        for id in self.of_part(Part::MetricFilter) {
            let p = &self.resources[&id].props;
            let group = text(p, "log_group_name");
            let pattern =
                filter::parse(&text(p, "pattern")).map_err(|problem| SimError::Pattern {
                    id: id.clone(),
                    problem,
                })?;
            let t = p
                .get("metric_transformation")
                .cloned()
                .unwrap_or(Value::Null);
            let value = t["value"].as_str().unwrap_or("1").to_string();
            let default = t["default_value"].as_f64();
            let dims = string_map(t.get("dimensions"));
            let key = |dimensions| {
                (
                    t["namespace"].as_str().unwrap_or_default().to_string(),
                    t["name"].as_str().unwrap_or_default().to_string(),
                    dimensions,
                )
            };
            // Minutes in which the group received events, and whether any matched.
            let mut minutes: BTreeMap<i64, bool> = BTreeMap::new();
            for e in events
                .iter()
                .filter(|e| e.log_group.as_ref().is_none_or(|g| *g == group))
            {
                let minute = e.timestamp - e.timestamp.rem_euclid(60_000);
                let matched = minutes.entry(minute).or_insert(false);
                let Some(extracted) = filter::matches(&pattern, &e.message) else {
                    continue;
                };
                *matched = true;
                let Some(n) = filter::metric_value(&value, &extracted, &e.message) else {
                    continue;
                };
                let dimensions = dims
                    .iter()
                    .map(|(k, v)| (k.clone(), extracted.get(v).cloned().unwrap_or_default()))
                    .collect();
                samples
                    .entry(key(dimensions))
                    .or_default()
                    .push((e.timestamp, n));
                hops.push(self.hop(
                    e.timestamp,
                    &id,
                    "matched",
                    format!("matched {:?} → {n}", e.message),
                ));
            }
            // The default value stands in for the minutes with events but no match.
            if let Some(d) = default {
                let series = samples.entry(key(BTreeMap::new())).or_default();
                series.extend(minutes.iter().filter(|(_, m)| !**m).map(|(t, _)| (*t, d)));
            }
        }
        for series in samples.values_mut() {
            series.sort_by_key(|(t, _)| *t);
        }
        Ok((samples, hops))
    }

    fn alarms(&self) -> Vec<AlarmSpec> {
        self.of_part(Part::Alarm)
            .into_iter()
            .filter_map(|id| {
                let p = &self.resources[&id].props;
                let n = p
                    .get("evaluation_periods")
                    .and_then(Value::as_u64)
                    .unwrap_or(1) as usize;
                let rule = alarm::Rule {
                    statistic: Statistic::parse(
                        p.get("statistic").and_then(Value::as_str),
                        p.get("extended_statistic").and_then(Value::as_str),
                    )?,
                    period_ms: p.get("period").and_then(Value::as_i64).unwrap_or(60) * 1000,
                    n,
                    m: p.get("datapoints_to_alarm")
                        .and_then(Value::as_u64)
                        .map_or(n, |m| m as usize),
                    threshold: p.get("threshold").and_then(Value::as_f64).unwrap_or(0.0),
                    comparison: Comparison::parse(&text(p, "comparison_operator"))?,
                    missing: Missing::parse(&text(p, "treat_missing_data")),
                };
                Some(AlarmSpec {
                    metric: (
                        text(p, "namespace"),
                        text(p, "metric_name"),
                        string_map(p.get("dimensions")),
                    ),
                    rule,
                    actions_enabled: p
                        .get("actions_enabled")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                    id,
                })
            })
            .collect()
    }

    /// Every alarm evaluated every minute of the virtual clock (every 10 s
    /// for high-resolution periods), from the first event until the alarms
    /// have had time to see the quiet after the last one; the changes of all
    /// alarms in time order.
    fn transitions(
        &self,
        alarms: &[AlarmSpec],
        samples: &Samples,
        events: &[LogEvent],
    ) -> Vec<Transition> {
        let step = if alarms.iter().any(|a| a.rule.period_ms < 60_000) {
            10_000
        } else {
            60_000
        };
        let tail = alarms
            .iter()
            .map(|a| (a.rule.n as i64 + 3) * a.rule.period_ms)
            .max()
            .unwrap_or(0);
        let end = events.last().map_or(self.t0, |e| e.timestamp) + tail;
        let mut out: Vec<Transition> = alarms
            .iter()
            .enumerate()
            .flat_map(|(i, a)| {
                let series = samples
                    .get(&a.metric)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                a.rule
                    .changes(series, self.t0, end, step)
                    .into_iter()
                    .map(move |change| Transition { alarm: i, change })
            })
            .collect();
        out.sort_by_key(|t| (t.change.t_ms, t.alarm));
        out
    }
}

/// Why an alarm changed, after its states: `(6 > 5)`, `(0 not 5)`.
fn reason(rule: &alarm::Rule, value: Option<f64>) -> String {
    match value {
        Some(value) => format!(
            "({value} {} {})",
            if rule.comparison.breaches(value, rule.threshold) {
                rule.comparison.symbol()
            } else {
                "not"
            },
            rule.threshold
        ),
        None => "(no datapoints)".to_string(),
    }
}

/// One alarm's metric as the alarm sees it: the statistic of each period
/// from the first event's minute to the last evaluation, against the
/// threshold. What a reviewer's chart of a simulation draws.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub alarm: String,
    pub metric: String,
    pub period_ms: i64,
    pub threshold: f64,
    pub comparison: &'static str,
    /// (start of the period on the virtual clock, from the first event's
    /// minute; its statistic or none).
    pub points: Vec<(i64, Option<f64>)>,
}

/// Each alarm's datapoints per period for these events (pure: no AWS call).
pub fn series(
    v: &Validated,
    state: &State,
    region: &str,
    events: &[LogEvent],
) -> Result<Vec<Series>, SimError> {
    let pipeline = Pipeline::new(v, state, region.to_string(), events);
    let (samples, _) = pipeline.filter(events)?;
    let last = events.last().map_or(pipeline.t0, |e| e.timestamp);
    let series = pipeline.alarms().into_iter().map(|a| {
        let rule = &a.rule;
        let data = samples
            .get(&a.metric)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let end = last + rule.n as i64 * rule.period_ms;
        let starts = (pipeline.t0..=end).step_by(rule.period_ms.max(1) as usize);
        let points = starts
            .map(|t| {
                let values: Vec<f64> = data
                    .iter()
                    .filter(|(at, _)| (t..t + rule.period_ms).contains(at))
                    .map(|(_, v)| *v)
                    .collect();
                (t - pipeline.t0, rule.statistic.of(&values))
            })
            .collect();
        Series {
            alarm: a.id.clone(),
            metric: format!("{}/{}", a.metric.0, a.metric.1),
            period_ms: rule.period_ms,
            threshold: rule.threshold,
            comparison: rule.comparison.symbol(),
            points,
        }
    });
    Ok(series.collect())
}

/// What the filters and alarms make of the events, before any action: the
/// matches and every state change, and each alarm's final state.
pub fn evaluate_offline(
    v: &Validated,
    state: &State,
    region: &str,
    events: &[LogEvent],
) -> Result<Outcome, SimError> {
    let pipeline = Pipeline::new(v, state, region.to_string(), events);
    let (samples, mut timeline) = pipeline.filter(events)?;
    let alarms = pipeline.alarms();
    let mut finals: BTreeMap<String, alarm::State> = alarms
        .iter()
        .map(|a| (a.id.clone(), alarm::State::InsufficientData))
        .collect();
    for t in pipeline.transitions(&alarms, &samples, events) {
        let a = &alarms[t.alarm];
        timeline.push(state_hop(&pipeline, a, &t.change));
        finals.insert(a.id.clone(), t.change.to);
    }
    timeline.sort_by_key(|h| h.t_ms);
    Ok(Outcome {
        timeline,
        alarms: finals,
        ..Outcome::default()
    })
}

fn state_hop(p: &Pipeline, a: &AlarmSpec, c: &alarm::Change) -> Hop {
    p.hop(
        c.t_ms,
        &a.id,
        "state",
        format!(
            "{} → {} {}",
            c.from.as_str(),
            c.to.as_str(),
            reason(&a.rule, c.value)
        ),
    )
}

struct Sim<'a> {
    pipeline: Pipeline<'a>,
    cx: &'a Ctx,
    report: &'a Report,
    /// Whether actions may run: against a local endpoint, or with --live.
    act: bool,
    out: Outcome,
}

pub async fn run(
    v: &Validated,
    state: &State,
    cx: &Ctx,
    report: &Report,
    events: &[LogEvent],
    opts: Options,
) -> Result<Outcome, SimError> {
    let local = cx.sdk.endpoint_url().is_some();
    let mut sim = Sim {
        pipeline: Pipeline::new(v, state, cx.region(), events),
        cx,
        report,
        act: local || opts.live,
        out: Outcome::default(),
    };
    if local {
        sim.drain_queues().await;
    }
    let (samples, matched) = sim.pipeline.filter(events)?;
    sim.out.timeline = matched;
    let alarms = sim.pipeline.alarms();
    sim.out.alarms = alarms
        .iter()
        .map(|a| (a.id.clone(), alarm::State::InsufficientData))
        .collect();
    // Actions change nothing the alarms see, so every change is known first.
    for t in sim.pipeline.transitions(&alarms, &samples, events) {
        let (a, c) = (&alarms[t.alarm], t.change);
        let hop = state_hop(&sim.pipeline, a, &c);
        sim.out.timeline.push(hop);
        sim.out.alarms.insert(a.id.clone(), c.to);
        if a.actions_enabled {
            sim.act_on(&a.id, c.from, c.to, c.value, c.t_ms).await;
        }
    }
    sim.out.timeline.sort_by_key(|h| h.t_ms);
    Ok(sim.out)
}

impl Sim<'_> {
    fn hop(&mut self, t: i64, resource: &str, kind: &str, detail: String) {
        let hop = self.pipeline.hop(t, resource, kind, detail);
        self.out.timeline.push(hop);
    }

    /// The actions of one transition, each only if the wiring lets it run.
    async fn act_on(
        &mut self,
        alarm: &str,
        from: alarm::State,
        to: alarm::State,
        value: Option<f64>,
        t: i64,
    ) {
        let list = match to {
            alarm::State::Alarm => "alarm_actions",
            alarm::State::Ok => "ok_actions",
            alarm::State::InsufficientData => "insufficient_data_actions",
        };
        let actions: Vec<String> = self.pipeline.resources[alarm]
            .props
            .get(list)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for arn in actions {
            let target = self
                .pipeline
                .resources
                .iter()
                .find(|(_, r)| r.attrs.get("arn").and_then(Value::as_str) == Some(arn.as_str()))
                .map(|(id, _)| id.clone());
            let Some(target) = target else {
                self.hop(
                    t,
                    alarm,
                    "action",
                    format!("{arn} is not a resource of this stack: not simulated"),
                );
                continue;
            };
            let edge = self
                .report
                .edges
                .iter()
                .find(|e| e.from == alarm && e.to == target)
                .cloned();
            if let Some(e) = edge.as_ref().filter(|e| !e.allowed) {
                self.hop(
                    t,
                    alarm,
                    "dropped",
                    format!(
                        "{} on {target} dropped, as AWS would drop it: {}",
                        e.action,
                        e.missing.clone().unwrap_or_default()
                    ),
                );
                continue;
            }
            let event = self.alarm_event(alarm, from, to, value, t);
            let schema = self.pipeline.v.schema(&target);
            match schema.part {
                Part::Function if !self.act => self.hop(t, &target, "would_invoke", format!(
                    "would invoke with {event} (the calls would reach real AWS: pass --live to run them)"
                )),
                Part::Function => self.invoke(&target, alarm, event, t).await,
                Part::Topic if !self.act => self.hop(t, &target, "would_publish", "would publish the alarm's notification (pass --live)".to_string()),
                Part::Topic => self.publish(&target, alarm, to, t).await,
                _ => self.hop(t, &target, "action", format!("{} actions are not simulated", schema.type_name)),
            }
        }
    }

    /// The payload CloudWatch sends a function for a transition.
    fn alarm_event(
        &self,
        alarm: &str,
        from: alarm::State,
        to: alarm::State,
        value: Option<f64>,
        t: i64,
    ) -> Value {
        let p = &self.pipeline.resources[alarm].props;
        let arn = text(&self.pipeline.resources[alarm].attrs, "arn");
        let time = iso_millis(t);
        let account = arn.split(':').nth(4).unwrap_or_default().to_string();
        json!({
            "source": "aws.cloudwatch",
            "alarmArn": arn,
            "accountId": account,
            "time": time,
            "region": self.cx.region(),
            "alarmData": {
                "alarmName": text(p, "alarm_name"),
                "state": {"value": to.as_str(), "reason": format!("Threshold Crossed: the latest datapoint [{}] was compared with the threshold ({})", value.map_or("none".into(), |v| v.to_string()), p.get("threshold").cloned().unwrap_or(Value::Null)), "timestamp": time},
                "previousState": {"value": from.as_str(), "timestamp": time},
                "configuration": {
                    "description": text(p, "alarm_description"),
                    "metrics": [{"id": "m1", "metricStat": {
                        "metric": {"namespace": text(p, "namespace"), "name": text(p, "metric_name"), "dimensions": p.get("dimensions").cloned().unwrap_or(json!({}))},
                        "period": p.get("period").cloned().unwrap_or(Value::Null),
                        "stat": p.get("statistic").or(p.get("extended_statistic")).cloned().unwrap_or(Value::Null)}, "returnData": true}]
                }
            }
        })
    }

    /// Runs the function for one alarm event. The invocation takes no
    /// virtual time: its steps, its answer and what it published are told at
    /// the alarm's evaluation, however long the machine took to run it.
    async fn invoke(&mut self, function: &str, alarm: &str, event: Value, t: i64) {
        self.hop(t, function, "invoked", format!("invoked by {alarm}"));
        let (ok, response) = match self.run_function(function, event).await {
            Ok((outcome, steps)) => {
                for (resource, detail) in steps {
                    self.hop(t, &resource, "step", detail);
                }
                match outcome {
                    runtime::Outcome::Response(v) => (true, v),
                    runtime::Outcome::Error { body, .. } | runtime::Outcome::InitError(body) => {
                        (false, body)
                    }
                }
            }
            Err(e) => (false, json!({"error": e.to_string()})),
        };
        let detail = match response["error"].as_str() {
            Some(e) => e.to_string(),
            None => summary(&response),
        };
        self.hop(t, function, if ok { "returned" } else { "failed" }, detail);
        self.out.invocations.push(Invocation {
            function: function.into(),
            alarm: alarm.into(),
            ok,
            response,
        });
        self.collect_messages(t).await;
    }

    /// Builds (or reuses) the code apply uploads, and runs its `bootstrap`
    /// under a local Runtime API for one invocation. Returns the outcome and
    /// the steps the function logged.
    async fn run_function(
        &self,
        function: &str,
        event: Value,
    ) -> Result<(runtime::Outcome, Vec<(String, String)>), RunError> {
        let d = &self.pipeline.resources[function];
        let runtime_name = text(&d.props, "runtime");
        if !runtime_name.starts_with("provided") {
            return Err(RunError::Runtime(runtime_name));
        }
        let zip = self.function_code(d).await?;
        let bootstrap =
            crate::package::unzip_file(&zip, "bootstrap").ok_or(RunError::NoBootstrap)?;
        let work = tempfile::tempdir()?;
        let exe = work.path().join("bootstrap");
        std::fs::write(&exe, bootstrap)?;
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let arn = d
            .attrs
            .get("arn")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api = runtime::RuntimeApi::start(arn).await?;
        let timeout =
            Duration::from_secs(d.props.get("timeout").and_then(Value::as_u64).unwrap_or(3));
        let mut child = self
            .runtime_command(d, &exe, work.path(), &api.address)
            .spawn()
            .map_err(RunError::Spawn)?;
        let stdout = child.stdout.take();
        let logged = std::thread::spawn(move || {
            let lines = stdout.map(|s| std::io::BufReader::new(s).lines().map_while(Result::ok));
            lines.map(Iterator::collect::<Vec<_>>).unwrap_or_default()
        });
        let answer_by = timeout + Duration::from_secs(10);
        let outcome = api.invoke("simulate-1", event, timeout, answer_by).await;
        let _ = child.kill();
        let _ = child.wait();
        let lines = logged.join().unwrap_or_default();
        let outcome = outcome.ok_or(RunError::Timeout(timeout.as_secs()))?;
        Ok((outcome, self.steps(function, &lines)))
    }

    /// The zip apply uploads: built from `source` (or reused), or `filename`.
    async fn function_code(&self, d: &Deployed) -> Result<Vec<u8>, RunError> {
        let dir = self.pipeline.v.stack.dir();
        let source = d.props.get("source").and_then(Value::as_str);
        match (source, d.props.get("filename").and_then(Value::as_str)) {
            (Some(source), _) => {
                let arch = crate::providers::str_list(d.props.get("architectures"))
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "x86_64".into());
                let (crate_dir, events) = (dir.join(source), self.cx.events.clone());
                let built = tokio::task::spawn_blocking(move || {
                    crate::build::build(&crate_dir, &arch, events.as_ref())
                });
                let built = built.await.map_err(|e| RunError::Build(e.to_string()))?;
                Ok(built.map_err(|e| RunError::Build(e.to_string()))?.zip)
            }
            (None, Some(file)) => std::fs::read(dir.join(file)).map_err(|error| RunError::Read {
                path: file.to_string(),
                error,
            }),
            _ => Err(RunError::NoCode),
        }
    }

    /// The function's bootstrap with the environment Lambda gives it.
    fn runtime_command(
        &self,
        d: &Deployed,
        exe: &std::path::Path,
        work: &std::path::Path,
        api: &str,
    ) -> std::process::Command {
        let name = text(&d.props, "function_name");
        let memory = d.props.get("memory_size").map(Value::to_string);
        let mut cmd = std::process::Command::new(exe);
        cmd.env_clear()
            // The standard configuration chain for its own calls, as the caller has it.
            .envs(
                std::env::vars()
                    .filter(|(k, _)| k.starts_with("AWS_") || k == "HOME" || k == "PATH"),
            )
            .env("AWS_REGION", self.cx.region())
            .env("AWS_LAMBDA_RUNTIME_API", api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                memory.unwrap_or_else(|| "128".into()),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "simulate")
            .env("_HANDLER", text(&d.props, "handler"))
            .env("LAMBDA_TASK_ROOT", work)
            .current_dir(work)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let environment = d.props.get("environment").and_then(|e| e.get("variables"));
        for (k, v) in environment.and_then(Value::as_object).into_iter().flatten() {
            cmd.env(k, v.as_str().map_or_else(|| v.to_string(), str::to_string));
        }
        cmd
    }

    /// The logical id of the resource with this physical id, else the id.
    fn resource_of(&self, physical_id: &str) -> String {
        let resources = self.pipeline.resources.iter();
        let found = resources
            .clone()
            .find(|(_, r)| r.physical_id.as_deref() == Some(physical_id));
        found.map_or(physical_id.to_string(), |(k, _)| k.clone())
    }

    /// The function's step logs (one JSON line per step), as (resource,
    /// detail); restarts are told on the instances they concern.
    fn steps(&self, function: &str, lines: &[String]) -> Vec<(String, String)> {
        let instances: Vec<String> = self.pipeline.resources[function]
            .props
            .get("environment")
            .and_then(|e| e["variables"]["INSTANCE_IDS"].as_str())
            .map(|ids| {
                ids.split(',')
                    .map(|id| self.resource_of(id.trim()))
                    .collect()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for line in lines {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let Some(step) = v["step"].as_str() else {
                continue;
            };
            // The step names the instances it acted on (a fleet's function
            // restarts one); an older function's, all it was given.
            let acted: Vec<String> = match v["instances"].as_array() {
                Some(ids) => ids
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|id| self.resource_of(id))
                    .collect(),
                None => instances.clone(),
            };
            match step {
                "stop" | "stopped" | "start" | "running" | "reboot" if !acted.is_empty() => {
                    for i in &acted {
                        out.push((i.clone(), step.to_string()));
                    }
                }
                _ => {
                    let mut detail = step.to_string();
                    if let Some(why) = v["why"].as_str().or(v["error"].as_str()) {
                        detail.push_str(&format!(": {why}"));
                    }
                    out.push((function.to_string(), detail));
                }
            }
        }
        out
    }

    /// CloudWatch's notification for a transition, published to the topic.
    async fn publish(&mut self, topic: &str, alarm: &str, to: alarm::State, t: i64) {
        let arn = text(&self.pipeline.resources[topic].attrs, "arn");
        let name = text(&self.pipeline.resources[alarm].props, "alarm_name");
        let message = json!({"AlarmName": name, "NewStateValue": to.as_str(), "AlarmArn": self.pipeline.resources[alarm].attrs.get("arn")});
        let sent = self
            .cx
            .sns()
            .publish()
            .topic_arn(&arn)
            .subject(format!("{}: \"{name}\"", to.as_str()))
            .message(message.to_string())
            .send()
            .await;
        match sent.map_err(aws) {
            Ok(_) => self.hop(
                t,
                topic,
                "published",
                format!("{} notification of {alarm}", to.as_str()),
            ),
            Err(e) => self.hop(t, topic, "failed", e.to_string()),
        }
        self.collect_messages(t).await;
    }

    /// The queues subscribed to the stack's topics, with whether the queue
    /// policy lets the topic deliver (as `check` proved it).
    fn subscribed_queues(&self) -> Vec<(String, String, bool, Option<String>)> {
        self.report
            .edges
            .iter()
            .filter(|e| {
                e.action == "sqs:SendMessage" && self.pipeline.resources.contains_key(&e.to)
            })
            .filter_map(|e| {
                let url = self.pipeline.resources[&e.to]
                    .attrs
                    .get("url")
                    .and_then(Value::as_str)?
                    .to_string();
                Some((e.to.clone(), url, e.allowed, e.missing.clone()))
            })
            .collect()
    }

    async fn drain_queues(&mut self) {
        for (_, url, _, _) in self.subscribed_queues() {
            let _ = self.receive(&url).await;
        }
    }

    /// Receives and deletes what the queue holds now.
    async fn receive(&self, url: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        loop {
            let got = self
                .cx
                .sqs()
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await;
            let Ok(out) = got else { break };
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                if let Some(handle) = m.receipt_handle {
                    let _ = self
                        .cx
                        .sqs()
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await;
                }
                bodies.push(m.body.unwrap_or_default());
            }
        }
        bodies
    }

    async fn collect_messages(&mut self, t: i64) {
        for (queue, url, allowed, missing) in self.subscribed_queues() {
            let bodies = self.receive(&url).await;
            if bodies.is_empty() {
                continue;
            }
            if !allowed {
                self.hop(
                    t,
                    &queue,
                    "dropped",
                    format!(
                        "{} message(s) from the topic dropped, as AWS would drop them: {}",
                        bodies.len(),
                        missing.unwrap_or_default()
                    ),
                );
                continue;
            }
            for body in bodies {
                // What SNS delivers is an envelope around the published message.
                let mut envelope = serde_json::from_str::<Value>(&body).ok();
                let shown = envelope
                    .as_ref()
                    .and_then(|env| env["Subject"].as_str().or(env["Message"].as_str()))
                    .map_or_else(|| body.clone(), str::to_string);
                self.hop(t, &queue, "received", format!("received {shown:?}"));
                let body = match envelope.as_mut().and_then(Value::as_object_mut) {
                    Some(env) => {
                        env.insert("Timestamp".into(), Value::from(iso_millis(t)));
                        Value::Object(env.clone()).to_string()
                    }
                    None => body,
                };
                self.out.messages.push(Message {
                    t_ms: t - self.pipeline.t0,
                    queue: queue.clone(),
                    body,
                });
            }
        }
    }
}

/// What a function returned, in a line: its `outcome` and why, when it says.
fn summary(response: &Value) -> String {
    match (
        response["outcome"].as_str(),
        response["why"]
            .as_str()
            .or(response["errorMessage"].as_str()),
    ) {
        (Some(outcome), Some(why)) => format!("returned {outcome}: {why}"),
        (Some(outcome), None) => format!("returned {outcome}"),
        (None, Some(error)) => format!("failed: {error}"),
        _ => {
            let text = response.to_string();
            text.chars().take(200).collect()
        }
    }
}

/// An epoch time in milliseconds as `2026-11-25T10:20:08.431Z`.
fn iso_millis(t: i64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(t.max(0) as u64))
        .to_string()
}

/// `+MM:SS` of a virtual time in milliseconds.
pub fn clock(t_ms: i64) -> String {
    let s = t_ms.max(0) / 1000;
    format!("+{:02}:{:02}", s / 60, s % 60)
}

/// The timeline as text, one line per hop.
pub fn render(outcome: &Outcome) -> String {
    use std::fmt::Write as _;
    let width = outcome
        .timeline
        .iter()
        .map(|h| h.resource.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for h in &outcome.timeline {
        let _ = writeln!(out, "{} {:width$}  {}", clock(h.t_ms), h.resource, h.detail);
    }
    let _ = writeln!(
        out,
        "\nAlarms: {}. Invocations: {}. Messages received: {}.",
        outcome
            .alarms
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
        outcome.invocations.len(),
        outcome.messages.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    const SEED: &str = include_str!("../../tests/fixtures/seed/stack.yaml");
    const DEMO_EVENTS: &str = include_str!("../../scripts/lib/demo-events.jsonl");
    const SLOW: &str = "High response time for /api/data: 3500 ms";
    const FAST: &str = "GET /api/data 200 95 ms";
    const T0: i64 = 1_764_669_600_000;

    fn validated(src: &str) -> Validated {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("stack.yaml");
        let stack = crate::config::Stack::parse(&path, src).unwrap();
        crate::validate::validate(stack, &[], Some("us-east-2")).unwrap()
    }

    fn offline(src: &str, events: &[LogEvent]) -> Outcome {
        evaluate_offline(&validated(src), &State::new("s"), "us-east-2", events).unwrap()
    }

    fn states(o: &Outcome) -> Vec<(i64, String)> {
        o.timeline
            .iter()
            .filter(|h| h.kind == "state")
            .map(|h| (h.t_ms / 1000, h.detail.clone()))
            .collect()
    }

    fn line(t: i64, message: &str) -> LogEvent {
        LogEvent {
            timestamp: t,
            message: message.into(),
            log_group: None,
        }
    }

    #[test]
    fn the_demos_burst_alarms_once_and_the_quiet_after_the_data_brings_nothing_back() {
        let o = offline(SEED, &parse_events(DEMO_EVENTS).unwrap());
        assert_eq!(
            states(&o),
            [
                (60, "INSUFFICIENT_DATA → OK (0 not 5)".to_string()),
                (300, "OK → ALARM (6 > 5)".to_string()),
                (900, "ALARM → OK (0 not 5)".to_string()),
            ]
        );
    }

    #[test]
    fn without_a_default_value_the_alarm_stays_until_the_burst_leaves_the_range() {
        // The tutorial's shape: no default value, missing data `missing`.
        let src = SEED.replace("        default_value: 0\n", "").replace(
            "treat_missing_data: notBreaching",
            "treat_missing_data: missing",
        );
        let events: Vec<LogEvent> = (0..6)
            .map(|i| line(T0 + 240_000 + i * 7_000, SLOW))
            .collect();
        assert_eq!(
            states(&offline(&src, &events)),
            [
                // The clock starts at the first line's minute.
                (60, "INSUFFICIENT_DATA → ALARM (6 > 5)".to_string()),
                // R = 3 periods of 10 minutes after the last slow line.
                (
                    1860,
                    "ALARM → INSUFFICIENT_DATA (no datapoints)".to_string()
                ),
            ]
        );
    }

    /// A minute of the application's log: nothing, fast lines only, or some
    /// slow ones (among fast ones or not).
    fn minutes() -> impl Strategy<Value = Vec<(bool, usize)>> {
        proptest::collection::vec((any::<bool>(), 0usize..9), 1..40).prop_map(|mut m| {
            m[0].0 = true; // the clock starts at the first line
            m
        })
    }

    fn log_of(minutes: &[(bool, usize)], shift: i64) -> Vec<LogEvent> {
        let mut out = Vec::new();
        for (k, (present, slow)) in minutes.iter().enumerate() {
            let start = T0 + shift + k as i64 * 60_000;
            if *present || *slow > 0 {
                out.push(line(start, FAST));
            }
            out.extend((0..*slow).map(|i| line(start + 1_000 + i as i64 * 5_000, SLOW)));
        }
        out
    }

    /// The seed alarm with other settings, all of which AWS accepts.
    fn alarm_settings(
    ) -> impl Strategy<Value = (i64, usize, usize, &'static str, i64, &'static str)> {
        (
            prop::sample::select(vec![60i64, 120, 300, 600]),
            1usize..4,
            1usize..4,
            prop::sample::select(vec!["Sum", "SampleCount", "Average", "Maximum"]),
            0i64..8,
            prop::sample::select(vec!["missing", "ignore", "breaching", "notBreaching"]),
        )
            .prop_map(|(period, n, m, stat, threshold, missing)| {
                (period, n, m.min(n), stat, threshold, missing)
            })
    }

    fn with_settings(s: &(i64, usize, usize, &str, i64, &str)) -> String {
        SEED.replace("period: 600", &format!("period: {}", s.0))
            .replace(
                "evaluation_periods: 1",
                &format!("evaluation_periods: {}", s.1),
            )
            .replace(
                "datapoints_to_alarm: 1",
                &format!("datapoints_to_alarm: {}", s.2),
            )
            .replace("statistic: Sum", &format!("statistic: {}", s.3))
            .replace("threshold: 5", &format!("threshold: {}", s.4))
            .replace(
                "treat_missing_data: notBreaching",
                &format!("treat_missing_data: {}", s.5),
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The metric the filter makes of the log (1 per slow line, the
        /// default 0 in a minute with lines but none slow), fed to the
        /// evaluator directly, changes the alarm exactly as the whole
        /// pipeline does.
        #[test]
        fn the_pipeline_and_the_evaluator_fed_directly_agree(minutes in minutes(), s in alarm_settings()) {
            let src = with_settings(&s);
            let events = log_of(&minutes, 0);
            let got = offline(&src, &events);
            let mut samples = Vec::new();
            for (k, (present, slow)) in minutes.iter().enumerate() {
                let start = T0 + k as i64 * 60_000;
                if *slow == 0 && *present {
                    samples.push((start, 0.0));
                }
                samples.extend((0..*slow).map(|i| (start + 1_000 + i as i64 * 5_000, 1.0)));
            }
            let rule = alarm::Rule {
                statistic: Statistic::parse(Some(s.3), None).unwrap(),
                period_ms: s.0 * 1000,
                n: s.1,
                m: s.2,
                threshold: s.4 as f64,
                comparison: Comparison::GreaterThan,
                missing: Missing::parse(s.5),
            };
            let end = events.last().unwrap().timestamp + (s.1 as i64 + 3) * s.0 * 1000;
            let direct: Vec<(i64, String)> = rule
                .changes(&samples, T0, end, 60_000)
                .iter()
                .map(|c| ((c.t_ms - T0) / 1000, format!("{} → {} {}", c.from.as_str(), c.to.as_str(), reason(&rule, c.value))))
                .collect();
            prop_assert_eq!(states(&got), direct);
        }

        /// Moving every line by whole periods moves nothing on the timeline.
        #[test]
        fn shifting_the_log_by_whole_periods_changes_nothing(minutes in minutes(), s in alarm_settings(), periods in 1i64..5000) {
            let src = with_settings(&s);
            let before = offline(&src, &log_of(&minutes, 0));
            let after = offline(&src, &log_of(&minutes, periods * s.0 * 1000));
            prop_assert_eq!(format!("{:?}", before.timeline), format!("{:?}", after.timeline));
            prop_assert_eq!(before.alarms, after.alarms);
        }

        /// The demo's shape at any time and size: fast lines, one burst, fast
        /// lines, then nothing. An alarm counting (or taking the maximum of)
        /// slow lines in one period alarms at most once, however long the
        /// quiet, and once when the burst fits in a period.
        #[test]
        fn one_burst_then_quiet_alarms_once(
            before in 0usize..12, slow in 6usize..30, after in 0usize..20, shift in 0i64..600,
            period in prop::sample::select(vec![60i64, 300, 600, 900]),
            stat in prop::sample::select(vec!["Sum", "SampleCount", "Maximum"]),
            missing in prop::sample::select(vec!["missing", "ignore", "notBreaching"]),
        ) {
            let mut minutes = vec![(true, 0); before];
            minutes.push((true, slow));
            minutes.extend(std::iter::repeat_n((true, 0), after));
            let threshold = if stat == "Maximum" { 0 } else { 5 };
            let src = with_settings(&(period, 1, 1, stat, threshold, missing));
            let got = offline(&src, &log_of(&minutes, shift * 1000));
            let alarms = states(&got).iter().filter(|(_, d)| d.contains("→ ALARM")).count();
            // A burst (at most 146 s long) fits in one period of 5 minutes or more.
            let fits = period >= 300 || stat == "Maximum";
            prop_assert!(alarms == 1 || (alarms == 0 && !fits), "{:?}", states(&got));
        }
    }
}

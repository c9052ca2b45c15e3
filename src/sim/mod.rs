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
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::check::Report;
use crate::providers::{aws, Ctx};
use crate::schema::Props;
use crate::state::State;
use crate::validate::Validated;

use alarm::{Comparison, Missing, Point, Statistic};

/// One log line, as `aws logs put-log-events` takes it.
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub timestamp: i64,
    pub message: String,
    /// The log group it goes to; every filter's group when not given.
    pub log_group: Option<String>,
}

/// Parses JSON Lines of `{"timestamp": epoch-ms, "message": "..."}`.
pub fn parse_events(text: &str) -> Result<Vec<LogEvent>, String> {
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
        let timestamp = v["timestamp"]
            .as_i64()
            .ok_or_else(|| format!("line {}: `timestamp` must be epoch milliseconds", n + 1))?;
        let message = v["message"]
            .as_str()
            .ok_or_else(|| format!("line {}: `message` must be a string", n + 1))?
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
        return Err(
            "no events: give JSON Lines of {\"timestamp\": epoch-ms, \"message\": \"...\"}".into(),
        );
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
    pub queue: String,
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

struct Sim<'a> {
    v: &'a Validated,
    cx: &'a Ctx,
    report: &'a Report,
    resources: BTreeMap<String, Deployed>,
    /// Whether actions may run: against a local endpoint, or with --live.
    act: bool,
    t0: i64,
    out: Outcome,
}

/// An alarm as evaluated.
struct AlarmSpec {
    id: String,
    namespace: String,
    metric: String,
    dimensions: BTreeMap<String, String>,
    statistic: Statistic,
    period_ms: i64,
    n: usize,
    m: usize,
    threshold: f64,
    comparison: Comparison,
    missing: Missing,
    actions_enabled: bool,
    state: alarm::State,
}

type MetricKey = (String, String, BTreeMap<String, String>);

fn text(p: &Props, k: &str) -> String {
    p.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub async fn run(
    v: &Validated,
    state: &State,
    cx: &Ctx,
    report: &Report,
    events: &[LogEvent],
    opts: Options,
) -> Result<Outcome, String> {
    let values = crate::plan::StackValues {
        name: v.stack.name.clone(),
        region: Some(cx.region()),
        account_id: None,
    };
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
                    props: crate::plan::declared_props(v, &d.id, &values, &|_, _| None),
                    attrs: Default::default(),
                    physical_id: None,
                },
            };
            (d.id.clone(), deployed)
        })
        .collect();
    let local = cx.sdk.endpoint_url().is_some();
    let t0 = events
        .first()
        .map_or(0, |e| e.timestamp - e.timestamp.rem_euclid(60_000));
    let mut sim = Sim {
        v,
        cx,
        report,
        resources,
        act: local || opts.live,
        t0,
        out: Outcome::default(),
    };
    if local {
        sim.drain_queues().await;
    }
    let samples = sim.filter(events)?;
    sim.evaluate(&samples, events).await?;
    sim.out.timeline.sort_by_key(|h| h.t_ms);
    Ok(sim.out)
}

impl Sim<'_> {
    fn of_type(&self, t: &str) -> Vec<String> {
        let mut ids: Vec<&crate::config::Decl> = self
            .v
            .stack
            .decls
            .values()
            .filter(|d| d.type_name == t)
            .collect();
        ids.sort_by_key(|d| d.span.line);
        ids.into_iter().map(|d| d.id.clone()).collect()
    }

    fn hop(&mut self, t: i64, resource: &str, kind: &str, detail: String) {
        self.out.timeline.push(Hop {
            t_ms: t - self.t0,
            resource: resource.to_string(),
            kind: kind.to_string(),
            detail,
        });
    }

    /// Runs every event through the metric filters of its log group.
    fn filter(
        &mut self,
        events: &[LogEvent],
    ) -> Result<BTreeMap<MetricKey, Vec<(i64, f64)>>, String> {
        let mut samples: BTreeMap<MetricKey, Vec<(i64, f64)>> = BTreeMap::new();
        for id in self.of_type("aws_cloudwatch_log_metric_filter") {
            let p = self.resources[&id].props.clone();
            let group = text(&p, "log_group_name");
            let pattern =
                filter::parse(&text(&p, "pattern")).map_err(|e| format!("`{id}`: pattern: {e}"))?;
            let t = p
                .get("metric_transformation")
                .cloned()
                .unwrap_or(Value::Null);
            let value = t["value"].as_str().unwrap_or("1").to_string();
            let default = t["default_value"].as_f64();
            let dims: BTreeMap<String, String> = t["dimensions"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
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
                let dimensions: BTreeMap<String, String> = dims
                    .iter()
                    .map(|(k, v)| (k.clone(), extracted.get(v).cloned().unwrap_or_default()))
                    .collect();
                samples
                    .entry((
                        t["namespace"].as_str().unwrap_or_default().into(),
                        t["name"].as_str().unwrap_or_default().into(),
                        dimensions,
                    ))
                    .or_default()
                    .push((e.timestamp, n));
                self.hop(
                    e.timestamp,
                    &id,
                    "matched",
                    format!("matched {:?} → {n}", e.message),
                );
            }
            // The default value stands in for the minutes with events but no match.
            if let Some(d) = default {
                let key = (
                    t["namespace"].as_str().unwrap_or_default().into(),
                    t["name"].as_str().unwrap_or_default().into(),
                    BTreeMap::new(),
                );
                for (minute, _) in minutes.iter().filter(|(_, matched)| !**matched) {
                    samples.entry(key.clone()).or_default().push((*minute, d));
                }
            }
        }
        Ok(samples)
    }

    fn alarms(&self) -> Vec<AlarmSpec> {
        self.of_type("aws_cloudwatch_metric_alarm")
            .into_iter()
            .filter_map(|id| {
                let p = &self.resources[&id].props;
                let n = p
                    .get("evaluation_periods")
                    .and_then(Value::as_u64)
                    .unwrap_or(1) as usize;
                Some(AlarmSpec {
                    namespace: text(p, "namespace"),
                    metric: text(p, "metric_name"),
                    dimensions: p
                        .get("dimensions")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
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
                    actions_enabled: p
                        .get("actions_enabled")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                    state: alarm::State::InsufficientData,
                    id,
                })
            })
            .collect()
    }

    /// Every minute of the virtual clock (every 10 s for high-resolution
    /// periods), from the first event until the alarms have had time to see
    /// the quiet after the last one.
    async fn evaluate(
        &mut self,
        samples: &BTreeMap<MetricKey, Vec<(i64, f64)>>,
        events: &[LogEvent],
    ) -> Result<(), String> {
        let mut alarms = self.alarms();
        let step = if alarms.iter().any(|a| a.period_ms < 60_000) {
            10_000
        } else {
            60_000
        };
        let tail = alarms
            .iter()
            .map(|a| (a.n as i64 + 3) * a.period_ms)
            .max()
            .unwrap_or(0);
        let end = events.last().map_or(self.t0, |e| e.timestamp) + tail;
        let mut tick = self.t0 + step;
        while tick <= end {
            for a in alarms.iter_mut() {
                let key = (a.namespace.clone(), a.metric.clone(), a.dimensions.clone());
                let series = samples.get(&key).map(Vec::as_slice).unwrap_or_default();
                let r = a.n + 2;
                let mut points = Vec::with_capacity(r);
                let mut newest = None;
                for k in 0..r as i64 {
                    let to = tick - (r as i64 - 1 - k) * a.period_ms;
                    let from = to - a.period_ms;
                    let in_window: Vec<f64> = series
                        .iter()
                        .filter(|(t, _)| *t >= from && *t < to)
                        .map(|(_, v)| *v)
                        .collect();
                    points.push(match a.statistic.of(&in_window) {
                        Some(value) => {
                            newest = Some(value);
                            if a.comparison.breaches(value, a.threshold) {
                                Point::Breaching
                            } else {
                                Point::NotBreaching
                            }
                        }
                        None => Point::Missing,
                    });
                }
                let next = alarm::evaluate(&points, a.n, a.m, a.missing, a.state);
                if next != a.state {
                    let why = match newest {
                        Some(value) => format!(
                            "({value} {} {})",
                            if a.comparison.breaches(value, a.threshold) {
                                a.comparison.symbol()
                            } else {
                                "not"
                            },
                            a.threshold
                        ),
                        None => "(no datapoints)".to_string(),
                    };
                    let (id, from) = (a.id.clone(), a.state);
                    a.state = next;
                    self.hop(
                        tick,
                        &id,
                        "state",
                        format!("{} → {} {why}", from.as_str(), next.as_str()),
                    );
                    if a.actions_enabled {
                        self.act_on(&id, from, next, newest, tick).await;
                    }
                }
            }
            tick += step;
        }
        self.out.alarms = alarms.iter().map(|a| (a.id.clone(), a.state)).collect();
        Ok(())
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
        let actions: Vec<String> = self.resources[alarm]
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
            match self.v.stack.decls[&target].type_name.as_str() {
                "aws_lambda_function" if !self.act => self.hop(t, &target, "would_invoke", format!(
                    "would invoke with {event} (the calls would reach real AWS: pass --live to run them)"
                )),
                "aws_lambda_function" => self.invoke(&target, alarm, event, t).await,
                "aws_sns_topic" if !self.act => self.hop(t, &target, "would_publish", "would publish the alarm's notification (pass --live)".to_string()),
                "aws_sns_topic" => self.publish(&target, alarm, to, t).await,
                other => self.hop(t, &target, "action", format!("{other} actions are not simulated")),
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
        let p = &self.resources[alarm].props;
        let arn = self.resources[alarm]
            .attrs
            .get("arn")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let time = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_millis(t.max(0) as u64),
        )
        .to_string();
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

    async fn invoke(&mut self, function: &str, alarm: &str, event: Value, t: i64) {
        self.hop(t, function, "invoked", format!("invoked by {alarm}"));
        let started = Instant::now();
        match self.run_function(function, event).await {
            Ok((outcome, steps)) => {
                for (ms, resource, detail) in steps {
                    self.hop(t + ms, &resource, "step", detail);
                }
                let (ok, response) = match outcome {
                    runtime::Outcome::Response(v) => (true, v),
                    runtime::Outcome::Error { body, .. } | runtime::Outcome::InitError(body) => {
                        (false, body)
                    }
                };
                let end = t + started.elapsed().as_millis() as i64;
                self.hop(
                    end,
                    function,
                    if ok { "returned" } else { "failed" },
                    summary(&response),
                );
                self.out.invocations.push(Invocation {
                    function: function.into(),
                    alarm: alarm.into(),
                    ok,
                    response,
                });
                self.collect_messages(end).await;
            }
            Err(e) => {
                let end = t + started.elapsed().as_millis() as i64;
                self.hop(end, function, "failed", e.clone());
                self.out.invocations.push(Invocation {
                    function: function.into(),
                    alarm: alarm.into(),
                    ok: false,
                    response: json!({"error": e}),
                });
            }
        }
    }

    /// Builds (or reuses) the code apply uploads, and runs its `bootstrap`
    /// under a local Runtime API for one invocation. Returns the outcome and
    /// the steps the function logged, with their offsets.
    async fn run_function(
        &self,
        function: &str,
        event: Value,
    ) -> Result<(runtime::Outcome, Vec<(i64, String, String)>), String> {
        let d = &self.resources[function];
        let runtime_name = text(&d.props, "runtime");
        if !runtime_name.starts_with("provided") {
            return Err(format!(
                "runtime {runtime_name}: stackctl runs custom-runtime (provided.*) functions only"
            ));
        }
        let dir = self.v.stack.dir();
        let zip = match (
            d.props.get("source").and_then(Value::as_str),
            d.props.get("filename").and_then(Value::as_str),
        ) {
            (Some(source), _) => {
                let arch = crate::providers::str_list(d.props.get("architectures"))
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "x86_64".into());
                let (crate_dir, events) = (dir.join(source), self.cx.events.clone());
                tokio::task::spawn_blocking(move || {
                    crate::build::build(&crate_dir, &arch, events.as_ref())
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
                .zip
            }
            (None, Some(file)) => {
                std::fs::read(dir.join(file)).map_err(|e| format!("cannot read {file}: {e}"))?
            }
            _ => return Err("the function has no code (`source` or `filename`)".into()),
        };
        let bootstrap =
            crate::package::unzip_file(&zip, "bootstrap").ok_or("the code has no `bootstrap`")?;
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let exe = work.path().join("bootstrap");
        std::fs::write(&exe, bootstrap).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| e.to_string())?;

        let name = text(&d.props, "function_name");
        let arn = d
            .attrs
            .get("arn")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let api = runtime::RuntimeApi::start(&arn)
            .await
            .map_err(|e| e.to_string())?;
        let timeout =
            Duration::from_secs(d.props.get("timeout").and_then(Value::as_u64).unwrap_or(3));
        let mut cmd = std::process::Command::new(&exe);
        cmd.env_clear()
            // The standard configuration chain for its own calls, as the caller has it.
            .envs(
                std::env::vars()
                    .filter(|(k, _)| k.starts_with("AWS_") || k == "HOME" || k == "PATH"),
            )
            .env("AWS_REGION", self.cx.region())
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                d.props
                    .get("memory_size")
                    .map(Value::to_string)
                    .unwrap_or_else(|| "128".into()),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "simulate")
            .env("_HANDLER", text(&d.props, "handler"))
            .env("LAMBDA_TASK_ROOT", work.path())
            .current_dir(work.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if let Some(vars) = d
            .props
            .get("environment")
            .and_then(|e| e.get("variables"))
            .and_then(Value::as_object)
        {
            for (k, v) in vars {
                cmd.env(k, v.as_str().map_or_else(|| v.to_string(), str::to_string));
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run the function's bootstrap: {e}"))?;
        let stdout = child.stdout.take();
        let logged = std::thread::spawn(move || {
            stdout
                .map(|s| {
                    std::io::BufReader::new(s)
                        .lines()
                        .map_while(Result::ok)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        });
        let outcome = api
            .invoke(
                "simulate-1",
                event,
                timeout,
                timeout + Duration::from_secs(10),
            )
            .await
            .ok_or_else(|| {
                format!(
                    "no answer within the function's timeout ({}s)",
                    timeout.as_secs()
                )
            });
        let _ = child.kill();
        let _ = child.wait();
        let lines = logged.join().unwrap_or_default();
        Ok((outcome?, self.steps(function, &lines)))
    }

    /// The function's step logs (one JSON line per step, with its duration),
    /// as hops; restarts are told on the instances they concern.
    fn steps(&self, function: &str, lines: &[String]) -> Vec<(i64, String, String)> {
        let instances: Vec<String> = self.resources[function]
            .props
            .get("environment")
            .and_then(|e| e["variables"]["INSTANCE_IDS"].as_str())
            .map(|ids| {
                ids.split(',')
                    .map(|id| {
                        let id = id.trim();
                        self.resources
                            .iter()
                            .find(|(_, r)| r.physical_id.as_deref() == Some(id))
                            .map_or(id.to_string(), |(k, _)| k.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut at = 0;
        let mut out = Vec::new();
        for line in lines {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let Some(step) = v["step"].as_str() else {
                continue;
            };
            at += v["ms"].as_i64().unwrap_or(0);
            match step {
                "stop" | "stopped" | "start" | "running" | "reboot" if !instances.is_empty() => {
                    for i in &instances {
                        out.push((at, i.clone(), step.to_string()));
                    }
                }
                _ => {
                    let mut detail = step.to_string();
                    if let Some(why) = v["why"].as_str().or(v["error"].as_str()) {
                        detail.push_str(&format!(": {why}"));
                    }
                    out.push((at, function.to_string(), detail));
                }
            }
        }
        out
    }

    /// CloudWatch's notification for a transition, published to the topic.
    async fn publish(&mut self, topic: &str, alarm: &str, to: alarm::State, t: i64) {
        let arn = self.resources[topic]
            .attrs
            .get("arn")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = text(&self.resources[alarm].props, "alarm_name");
        let message = json!({"AlarmName": name, "NewStateValue": to.as_str(), "AlarmArn": self.resources[alarm].attrs.get("arn")});
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
            .filter(|e| e.action == "sqs:SendMessage" && self.resources.contains_key(&e.to))
            .filter_map(|e| {
                let url = self.resources[&e.to]
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
                let shown = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|env| {
                        env["Subject"]
                            .as_str()
                            .or(env["Message"].as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| body.clone());
                self.hop(t, &queue, "received", format!("received {shown:?}"));
                self.out.messages.push(Message {
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

//! The remediation the slow-response alarm triggers: stop and start (or
//! reboot) the stack's instances, within the invocation's deadline, at most
//! once per cooldown, and report what happened on the SNS topic.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{InstanceStateName, Tag};
use serde_json::{json, Value};

/// The tag on an instance that remembers when this function last restarted it.
pub const LAST_RESTART_TAG: &str = "remediation:last-restart";

/// Time kept in hand before the invocation's deadline to report a failure.
const SAFETY_MARGIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    StopStart,
    Reboot,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::StopStart => "stop-start",
            Action::Reboot => "reboot",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The instances the function may restart.
    pub instance_ids: Vec<String>,
    /// INSTANCE_TAG: the alarm tag that names the one instance an alarm
    /// restarts (a fleet: one alarm per instance); without it, an alarm
    /// restarts all of them.
    pub instance_tag: Option<String>,
    pub topic_arn: String,
    pub action: Action,
    pub cooldown: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemediationError(pub String);

impl fmt::Display for RemediationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RemediationError {}

fn err(message: impl Into<String>) -> RemediationError {
    RemediationError(message.into())
}

impl Config {
    /// Reads the function's environment; a missing or invalid variable is an
    /// error that names it.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Config, RemediationError> {
        let ids = var("INSTANCE_IDS")
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                err("INSTANCE_IDS is not set: give the instance ids to restart, comma-separated")
            })?;
        let instance_ids: Vec<String> = ids
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = instance_ids.iter().find(|id| {
            !id.starts_with("i-") || id.len() < 3 || !id[2..].bytes().all(|b| b.is_ascii_hexdigit())
        }) {
            return Err(err(format!(
                "INSTANCE_IDS has `{bad}`, which is not an instance id (i-0123456789abcdef0)"
            )));
        }
        let topic_arn = var("TOPIC_ARN")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| err("TOPIC_ARN is not set: give the SNS topic to report on"))?;
        if !topic_arn.starts_with("arn:") || topic_arn.split(':').nth(2) != Some("sns") {
            return Err(err(format!(
                "TOPIC_ARN `{topic_arn}` is not an SNS topic ARN"
            )));
        }
        let action = match var("REMEDIATION_ACTION").as_deref().map(str::trim) {
            None | Some("") | Some("stop-start") => Action::StopStart,
            Some("reboot") => Action::Reboot,
            Some(other) => {
                return Err(err(format!(
                    "REMEDIATION_ACTION `{other}` is not `stop-start` or `reboot`"
                )))
            }
        };
        let cooldown = match var("COOLDOWN_SECONDS").as_deref().map(str::trim) {
            None | Some("") => 900,
            Some(s) => s.parse::<u64>().map_err(|_| {
                err(format!(
                    "COOLDOWN_SECONDS `{s}` is not a whole number of seconds"
                ))
            })?,
        };
        let instance_tag = var("INSTANCE_TAG").filter(|t| !t.trim().is_empty());
        Ok(Config {
            instance_ids,
            instance_tag,
            topic_arn,
            action,
            cooldown: Duration::from_secs(cooldown),
        })
    }
}

/// The moment the invocation must have answered by.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn from_epoch_ms(ms: u64) -> Deadline {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        Deadline(Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms)))
    }

    pub fn after(d: Duration) -> Deadline {
        Deadline(Instant::now() + d)
    }

    fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// The alarm, from whichever envelope it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub name: String,
    pub arn: String,
    pub state: String,
    pub previous_state: String,
    pub reason: String,
    /// When the alarm changed state (epoch seconds; through SNS, when SNS
    /// took the notification if the message does not say): the function's
    /// "now", so a replayed or simulated alarm is judged at its own time.
    pub time: Option<u64>,
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn required(v: &Value, path: &[&str], envelope: &str) -> Result<String, RemediationError> {
    text(v, path).map(str::to_string).ok_or_else(|| {
        err(format!(
            "malformed {envelope}: `{}` is missing",
            path.join(".")
        ))
    })
}

/// Reads a CloudWatch alarm event: the Lambda alarm action's payload, or the
/// same alarm published to SNS (directly as the alarm action's message, or the
/// SNS alarm notification format).
pub fn parse_event(event: &Value) -> Result<Alarm, RemediationError> {
    if let Some(records) = event.get("Records") {
        let record = records
            .as_array()
            .and_then(|r| r.first())
            .ok_or_else(|| err("malformed SNS event: `Records` is empty"))?;
        let message = required(record, &["Sns", "Message"], "SNS event")?;
        let inner: Value = serde_json::from_str(&message).map_err(|e| {
            err(format!(
                "malformed SNS event: `Records.0.Sns.Message` is not JSON: {e}"
            ))
        })?;
        if inner.get("AlarmName").is_some() {
            return Ok(Alarm {
                name: required(&inner, &["AlarmName"], "SNS alarm message")?,
                arn: text(&inner, &["AlarmArn"]).unwrap_or_default().to_string(),
                state: required(&inner, &["NewStateValue"], "SNS alarm message")?,
                previous_state: text(&inner, &["OldStateValue"])
                    .unwrap_or_default()
                    .to_string(),
                reason: text(&inner, &["NewStateReason"])
                    .unwrap_or_default()
                    .to_string(),
                time: text(&inner, &["StateChangeTime"])
                    .or(text(record, &["Sns", "Timestamp"]))
                    .and_then(epoch_secs),
            });
        }
        return parse_event(&inner);
    }
    if text(event, &["source"]) != Some("aws.cloudwatch") {
        return Err(err("malformed alarm event: `source` is not aws.cloudwatch (expected a CloudWatch alarm action or an SNS notification)"));
    }
    Ok(Alarm {
        name: required(event, &["alarmData", "alarmName"], "alarm event")?,
        arn: required(event, &["alarmArn"], "alarm event")?,
        state: required(event, &["alarmData", "state", "value"], "alarm event")?,
        previous_state: text(event, &["alarmData", "previousState", "value"])
            .unwrap_or_default()
            .to_string(),
        reason: text(event, &["alarmData", "state", "reason"])
            .unwrap_or_default()
            .to_string(),
        time: text(event, &["time"]).and_then(epoch_secs),
    })
}

pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub sns: aws_sdk_sns::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            ec2: aws_sdk_ec2::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
        }
    }
}

/// One structured log line per step, on stdout: CloudWatch Logs keeps it.
fn log(request_id: &str, step: &str, fields: Value) {
    let mut line = json!({"step": step, "request_id": request_id});
    if let (Some(l), Value::Object(f)) = (line.as_object_mut(), fields) {
        l.extend(f);
    }
    println!("{line}");
}

fn sdk_error<E, R>(what: &str, e: aws_sdk_ec2::error::SdkError<E, R>) -> RemediationError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    let detail = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    };
    err(format!("{what} failed: {detail}"))
}

async fn states(
    c: &Clients,
    ids: &[String],
) -> Result<Vec<(String, InstanceStateName, Option<u64>)>, RemediationError> {
    let out = c
        .ec2
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| sdk_error("DescribeInstances", e))?;
    let mut found = Vec::new();
    for instance in out
        .reservations
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r.instances.unwrap_or_default())
    {
        let id = instance.instance_id.unwrap_or_default();
        let state = instance
            .state
            .and_then(|s| s.name)
            .unwrap_or(InstanceStateName::Pending);
        let last = instance
            .tags
            .unwrap_or_default()
            .into_iter()
            .find(|t| t.key.as_deref() == Some(LAST_RESTART_TAG))
            .and_then(|t| t.value?.parse().ok());
        found.push((id, state, last));
    }
    if let Some(missing) = ids
        .iter()
        .find(|id| !found.iter().any(|(f, _, _)| f == *id))
    {
        return Err(err(format!("instance {missing} does not exist")));
    }
    Ok(found)
}

/// Polls until every instance is in `want`, failing early on a state it cannot
/// leave for `want` and before the deadline would pass.
async fn wait_for(
    c: &Clients,
    ids: &[String],
    want: InstanceStateName,
    deadline: Deadline,
) -> Result<(), RemediationError> {
    let mut delay = Duration::from_millis(500);
    loop {
        let now = states(c, ids).await?;
        if now.iter().all(|(_, s, _)| *s == want) {
            return Ok(());
        }
        if let Some((id, s, _)) = now.iter().find(|(_, s, _)| {
            matches!(
                s,
                InstanceStateName::Terminated | InstanceStateName::ShuttingDown
            )
        }) {
            return Err(err(format!(
                "instance {id} is {}; it cannot become {}",
                s.as_str(),
                want.as_str()
            )));
        }
        if deadline.remaining() < delay + SAFETY_MARGIN {
            return Err(err(format!(
                "the invocation's deadline would pass while waiting for {} to be {}; failing so Lambda retries",
                ids.join(", "),
                want.as_str()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// `2026-11-25T10:20:08.431+0000` (CloudWatch's form), `...Z` or
/// `...+00:00`, as epoch seconds.
pub fn epoch_secs(text: &str) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if text.get(4..5) != Some("-") || text.get(10..11) != Some("T") || !(1..=12).contains(&mo) {
        return None;
    }
    let zone = text[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone {
        "Z" | "" => 0,
        _ => {
            let sign = match zone.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let digits: String = zone[1..].chars().filter(char::is_ascii_digit).collect();
            let (oh, om) = (
                digits.get(..2)?.parse::<i64>().ok()?,
                digits.get(2..4)?.parse::<i64>().ok()?,
            );
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + s - offset).ok()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

struct Report {
    steps: Vec<Value>,
    started: Instant,
}

impl Report {
    fn step(&mut self, request_id: &str, name: &str, since: Instant, extra: Value) {
        let ms = since.elapsed().as_millis() as u64;
        let mut entry = json!({"step": name, "ms": ms});
        if let (Some(e), Value::Object(x)) = (entry.as_object_mut(), extra) {
            e.extend(x);
        }
        log(request_id, name, entry.clone());
        self.steps.push(entry);
    }
}

async fn restart(
    c: &Clients,
    cfg: &Config,
    deadline: Deadline,
    report: &mut Report,
    request_id: &str,
    now: u64,
) -> Result<(), RemediationError> {
    let ids = &cfg.instance_ids;
    match cfg.action {
        Action::Reboot => {
            let t = Instant::now();
            c.ec2
                .reboot_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .map_err(|e| sdk_error("RebootInstances", e))?;
            report.step(request_id, "reboot", t, json!({"instances": ids}));
        }
        Action::StopStart => {
            // An instance still starting cannot be stopped cleanly: let it settle.
            let t = Instant::now();
            let before = states(c, ids).await?;
            if before
                .iter()
                .any(|(_, s, _)| *s == InstanceStateName::Pending)
            {
                wait_for(c, ids, InstanceStateName::Running, deadline).await?;
            }
            c.ec2
                .stop_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .map_err(|e| sdk_error("StopInstances", e))?;
            report.step(request_id, "stop", t, json!({"instances": ids}));
            let t = Instant::now();
            // Starting an instance that is still stopping fails with
            // IncorrectInstanceState: wait for stopped.
            wait_for(c, ids, InstanceStateName::Stopped, deadline).await?;
            report.step(request_id, "stopped", t, json!({"instances": ids}));
            let t = Instant::now();
            c.ec2
                .start_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .map_err(|e| sdk_error("StartInstances", e))?;
            report.step(request_id, "start", t, json!({"instances": ids}));
            let t = Instant::now();
            wait_for(c, ids, InstanceStateName::Running, deadline).await?;
            report.step(request_id, "running", t, json!({"instances": ids}));
        }
    }
    let t = Instant::now();
    c.ec2
        .create_tags()
        .set_resources(Some(ids.clone()))
        .tags(
            Tag::builder()
                .key(LAST_RESTART_TAG)
                .value(now.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("CreateTags", e))?;
    report.step(request_id, "remember-restart", t, json!({}));
    Ok(())
}

async fn publish(
    c: &Clients,
    cfg: &Config,
    subject: &str,
    message: &Value,
) -> Result<(), RemediationError> {
    // SNS subjects: at most 100 characters, no line breaks.
    let subject: String = subject
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    c.sns
        .publish()
        .topic_arn(&cfg.topic_arn)
        .subject(subject)
        .message(serde_json::to_string_pretty(message).unwrap_or_default())
        .send()
        .await
        .map_err(|e| sdk_error("Publish", e))?;
    Ok(())
}

fn merged(base: &Value, extra: Value) -> Value {
    let mut m = base.clone();
    if let (Some(m), Value::Object(x)) = (m.as_object_mut(), extra) {
        m.extend(x);
    }
    m
}

/// The instances this alarm restarts: with INSTANCE_TAG, the one its tag
/// names, which must be one of INSTANCE_IDS (never another); else all.
async fn targets(
    c: &Clients,
    cfg: &Config,
    alarm: &Alarm,
) -> Result<Vec<String>, RemediationError> {
    let Some(key) = &cfg.instance_tag else {
        return Ok(cfg.instance_ids.clone());
    };
    if alarm.arn.is_empty() {
        return Err(err(format!(
            "the event of alarm {} carries no alarm ARN to read its {key} tag from: nothing restarted",
            alarm.name
        )));
    }
    let out = c
        .cloudwatch
        .list_tags_for_resource()
        .resource_arn(&alarm.arn)
        .send()
        .await
        .map_err(|e| sdk_error("ListTagsForResource", e))?;
    let named = out.tags().iter().find(|t| t.key() == Some(key.as_str()));
    let id = named.and_then(|t| t.value()).ok_or_else(|| {
        err(format!(
            "alarm {} has no tag {key} naming its instance: nothing restarted",
            alarm.name
        ))
    })?;
    if !cfg.instance_ids.iter().any(|i| i == id) {
        return Err(err(format!(
            "alarm {} names instance {id}, which is not one of INSTANCE_IDS: nothing restarted",
            alarm.name
        )));
    }
    Ok(vec![id.to_string()])
}

/// Handles one invocation. The result is what the invocation returns; an error
/// fails the invocation so that Lambda's retries apply.
pub async fn handle(
    c: &Clients,
    cfg: &Config,
    event: &Value,
    deadline: Deadline,
    request_id: &str,
) -> Result<Value, RemediationError> {
    let alarm = match parse_event(event) {
        Ok(a) => a,
        Err(e) => {
            log(request_id, "rejected", json!({"error": e.0}));
            return Err(e);
        }
    };
    log(
        request_id,
        "received",
        json!({"alarm": alarm.name, "state": alarm.state, "previous_state": alarm.previous_state}),
    );
    if alarm.state != "ALARM" {
        log(
            request_id,
            "ignored",
            json!({"alarm": alarm.name, "state": alarm.state}),
        );
        return Ok(json!({"outcome": "ignored", "alarm": alarm.name, "state": alarm.state}));
    }
    let mut report = Report {
        steps: Vec::new(),
        started: Instant::now(),
    };
    let targeted = match targets(c, cfg, &alarm).await {
        Ok(ids) => Config {
            instance_ids: ids,
            ..cfg.clone()
        },
        Err(e) => {
            let base = json!({"alarm": alarm.name, "alarm_arn": alarm.arn, "instances": []});
            let with = |extra: Value| merged(&base, extra);
            return fail(c, cfg, &alarm, &with, &report, e, request_id).await;
        }
    };
    let cfg = &targeted;
    let base = json!({
        "alarm": alarm.name, "alarm_arn": alarm.arn, "reason": alarm.reason,
        "instances": cfg.instance_ids, "action": cfg.action.as_str(),
    });
    let with = |extra: Value| {
        let mut m = base.clone();
        if let (Some(m), Value::Object(x)) = (m.as_object_mut(), extra) {
            m.extend(x);
        }
        m
    };

    // Cooldown: a flapping alarm must not restart the instance over and over.
    // A restart recorded after the alarm's time (a concurrent invocation)
    // is as recent as can be.
    let now = alarm.time.unwrap_or_else(now_secs);
    let recent = match states(c, &cfg.instance_ids).await {
        Ok(s) => s
            .into_iter()
            .filter_map(|(id, _, last)| Some((id, last?)))
            .find(|(_, last)| now.saturating_sub(*last) < cfg.cooldown.as_secs()),
        Err(e) => return fail(c, cfg, &alarm, &with, &report, e, request_id).await,
    };
    if let Some((id, last)) = recent {
        let when = match now.checked_sub(last) {
            Some(ago) => format!("{ago}s before this alarm"),
            None => "after this alarm's time".to_string(),
        };
        let message = with(json!({
            "outcome": "skipped",
            "why": format!("{id} was restarted by this function {when}; the cooldown is {}s", cfg.cooldown.as_secs()),
        }));
        log(request_id, "cooldown", message.clone());
        if let Err(e) = publish(
            c,
            cfg,
            &format!("Remediation skipped (cooldown): {}", alarm.name),
            &message,
        )
        .await
        {
            log(request_id, "publish-failed", json!({"error": e.0}));
        }
        return Ok(message);
    }

    match restart(c, cfg, deadline, &mut report, request_id, now).await {
        Ok(()) => {
            let message = with(
                json!({"outcome": "succeeded", "steps": report.steps, "ms": report.started.elapsed().as_millis() as u64}),
            );
            publish(
                c,
                cfg,
                &format!("Remediation succeeded: {}", alarm.name),
                &message,
            )
            .await?;
            log(request_id, "done", json!({"outcome": "succeeded"}));
            Ok(message)
        }
        Err(e) => fail(c, cfg, &alarm, &with, &report, e, request_id).await,
    }
}

async fn fail(
    c: &Clients,
    cfg: &Config,
    alarm: &Alarm,
    with: &dyn Fn(Value) -> Value,
    report: &Report,
    e: RemediationError,
    request_id: &str,
) -> Result<Value, RemediationError> {
    let message = with(json!({"outcome": "failed", "error": e.0, "steps": report.steps}));
    log(request_id, "failed", json!({"error": e.0}));
    if let Err(p) = publish(
        c,
        cfg,
        &format!("Remediation FAILED: {}", alarm.name),
        &message,
    )
    .await
    {
        log(request_id, "publish-failed", json!({"error": p.0}));
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const TOPIC: &str = "arn:aws:sns:us-east-2:123456789012:lambda_topic01";

    #[test]
    fn config_defaults_and_errors_name_the_variable() {
        let c = Config::from_env(env(&[
            ("INSTANCE_IDS", "i-0abc, i-0def"),
            ("TOPIC_ARN", TOPIC),
        ]))
        .unwrap();
        assert_eq!(c.instance_ids, vec!["i-0abc", "i-0def"]);
        assert_eq!(
            (c.action, c.cooldown),
            (Action::StopStart, Duration::from_secs(900))
        );
        assert!(Config::from_env(env(&[("TOPIC_ARN", TOPIC)]))
            .unwrap_err()
            .0
            .starts_with("INSTANCE_IDS is not set"));
        assert!(
            Config::from_env(env(&[("INSTANCE_IDS", "web-1"), ("TOPIC_ARN", TOPIC)]))
                .unwrap_err()
                .0
                .contains("INSTANCE_IDS has `web-1`")
        );
        assert!(Config::from_env(env(&[("INSTANCE_IDS", "i-0abc")]))
            .unwrap_err()
            .0
            .starts_with("TOPIC_ARN is not set"));
        let bad = Config::from_env(env(&[
            ("INSTANCE_IDS", "i-0abc"),
            ("TOPIC_ARN", TOPIC),
            ("REMEDIATION_ACTION", "kick"),
        ]));
        assert!(bad.unwrap_err().0.contains("REMEDIATION_ACTION `kick`"));
        let bad = Config::from_env(env(&[
            ("INSTANCE_IDS", "i-0abc"),
            ("TOPIC_ARN", TOPIC),
            ("COOLDOWN_SECONDS", "soon"),
        ]));
        assert!(bad.unwrap_err().0.contains("COOLDOWN_SECONDS `soon`"));
        let reboot = Config::from_env(env(&[
            ("INSTANCE_IDS", "i-0abc"),
            ("TOPIC_ARN", TOPIC),
            ("REMEDIATION_ACTION", "reboot"),
            ("COOLDOWN_SECONDS", "0"),
        ]));
        assert_eq!(reboot.unwrap().action, Action::Reboot);
    }

    #[test]
    fn malformed_events_name_what_is_missing() {
        assert!(parse_event(
            &json!({"source": "aws.cloudwatch", "alarmArn": "a", "alarmData": {"alarmName": "x"}})
        )
        .unwrap_err()
        .0
        .contains("`alarmData.state.value` is missing"));
        assert!(parse_event(&json!({"hello": 1}))
            .unwrap_err()
            .0
            .contains("`source` is not aws.cloudwatch"));
        assert!(parse_event(&json!({"Records": []}))
            .unwrap_err()
            .0
            .contains("`Records` is empty"));
        assert!(
            parse_event(&json!({"Records": [{"Sns": {"Message": "not json"}}]}))
                .unwrap_err()
                .0
                .contains("is not JSON")
        );
    }

    #[test]
    fn alarm_times_read_in_each_form_cloudwatch_and_sns_write() {
        assert_eq!(epoch_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            epoch_secs("2026-11-25T10:20:08.431+0000"),
            Some(1_795_602_008)
        );
        assert_eq!(epoch_secs("2026-11-25T10:20:08.431Z"), Some(1_795_602_008));
        assert_eq!(epoch_secs("2026-11-25T11:20:08+01:00"), Some(1_795_602_008));
        assert_eq!(epoch_secs("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(epoch_secs("yesterday"), None);
        let event = json!({"source": "aws.cloudwatch", "alarmArn": "arn:a", "time": "2026-11-25T10:20:08.431+0000",
            "alarmData": {"alarmName": "a", "state": {"value": "ALARM"}}});
        assert_eq!(parse_event(&event).unwrap().time, Some(1_795_602_008));
        // Through SNS without StateChangeTime: when SNS took the notification.
        let via_sns = json!({"Records": [{"Sns": {"Timestamp": "2026-11-25T10:20:09.655Z", "Message": serde_json::to_string(&json!({
            "AlarmName": "a", "NewStateValue": "ALARM"})).unwrap()}}]});
        assert_eq!(parse_event(&via_sns).unwrap().time, Some(1_795_602_009));
    }

    #[test]
    fn both_envelopes_give_the_same_alarm() {
        let direct = json!({"source": "aws.cloudwatch", "alarmArn": "arn:a", "time": "2026-11-25T10:20:08.431+0000", "alarmData": {
            "alarmName": "slow-responses", "state": {"value": "ALARM", "reason": "r"}, "previousState": {"value": "OK"}}});
        let via_sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": serde_json::to_string(&json!({
            "AlarmName": "slow-responses", "AlarmArn": "arn:a", "NewStateValue": "ALARM", "NewStateReason": "r", "OldStateValue": "OK",
            "StateChangeTime": "2026-11-25T10:20:08.431+0000"})).unwrap()}}]});
        assert_eq!(
            parse_event(&direct).unwrap(),
            parse_event(&via_sns).unwrap()
        );
    }
}

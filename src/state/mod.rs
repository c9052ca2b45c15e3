//! The state: what stackctl created, as it applied it and as AWS reported it,
//! behind one interface with two backends: a local file (`local`) and an S3
//! object with conditional writes (`s3`).
//!
//! Every change is made durable before the next AWS call, as a small journal
//! entry (what changed since the last write), so that a crash loses nothing
//! and a run costs O(changes) bytes, not a rewrite of the whole state per
//! call; at the end of a run the journal is folded into the state. A run
//! that changes nothing writes nothing: serial and backups stay as they were.
//! Every backend is guarded by a lock.

pub mod local;
pub mod s3;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use async_trait::async_trait;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::schema::Props;

pub const STATE_VERSION: u32 = 1;

/// How many earlier versions of the state are kept (`<stack>.backup.1` is the
/// newest).
pub const BACKUPS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the state is locked by {holder}\n  lock file: {path}\n  the lock is released when that run ends; if it hangs, stop it (stackctl force-unlock {id} clears a lock only once its process is gone)")]
    Locked {
        holder: String,
        id: String,
        path: PathBuf,
    },
    #[error("cannot read state {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("state {path} is not valid stackctl state: {message}; the newest backup is {backups}")]
    Corrupt {
        path: PathBuf,
        message: String,
        backups: String,
    },
    #[error("cannot write state {path}: {source}; the previous state is untouched")]
    Write { path: PathBuf, source: io::Error },
    #[error("state {path} belongs to stack `{found}`, not `{expected}`")]
    WrongStack {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    #[error("{0}")]
    Backend(String),
    #[error("the lock on {location} is no longer this run's ({now}): it was forced away while this run stalled. This run stopped before its next change; what it wrote after losing the lock is left out of the state. Run the command again")]
    LockLost { location: String, now: String },
    #[error("the state at {location} changed since this run read it (serial {read} was read; another run wrote since): nothing was overwritten. Run the command again")]
    Conflict { location: String, read: u64 },
    #[error("state {path} records resources in {recorded}, but this run uses {current}: with it, everything would look deleted and be created again. Use the credentials and region of {recorded} (AWS_PROFILE, AWS_REGION), or another stack name for {current}")]
    WrongAccount {
        path: PathBuf,
        recorded: String,
        current: String,
    },
}

/// A record as the state holds it: shared with the state's snapshots (the
/// last write, a write in flight), so copying a state copies pointers,
/// comparing it skips the records both share, and changing a record copies
/// that record alone. A run's state writes cost what changed, not the
/// state's size (docs/measurements.md, "The engine at 10,000 resources").
#[derive(Debug, Clone, Default)]
pub struct Rec(std::sync::Arc<ResourceState>);

impl std::ops::Deref for Rec {
    type Target = ResourceState;
    fn deref(&self) -> &ResourceState {
        &self.0
    }
}

impl std::ops::DerefMut for Rec {
    fn deref_mut(&mut self) -> &mut ResourceState {
        std::sync::Arc::make_mut(&mut self.0)
    }
}

impl PartialEq for Rec {
    fn eq(&self, other: &Rec) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl From<ResourceState> for Rec {
    fn from(r: ResourceState) -> Rec {
        Rec(std::sync::Arc::new(r))
    }
}

impl Serialize for Rec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Rec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rec, D::Error> {
        ResourceState::deserialize(d).map(Rec::from)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ResourceState {
    #[serde(rename = "type")]
    pub type_name: String,
    /// `None` while a create is in flight: the intent is recorded before the call,
    /// so a crash leaves an entry the next run adopts or retries.
    pub physical_id: Option<String>,
    /// The properties as stackctl last applied them.
    pub props: Props,
    /// Attributes AWS reported (arn, url, ...).
    pub attrs: Map<String, Value>,
    pub depends_on: Vec<String>,
    /// The idempotency token of the create in flight, derived from the
    /// lineage, the logical id and the serial the intent was recorded at: a run
    /// after a crash retries the create with the same token, so AWS returns
    /// what the first call made instead of making another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_token: Option<String>,
    /// Where its sensitive values sit (never shown, even once it is gone
    /// from the stack file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<crate::sensitive::Path>,
    /// A change of stackctl's own that did not finish: recorded before its
    /// call is sent, so the next run tells it from drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfinished: Option<Unfinished>,
}

impl ResourceState {
    pub fn is_pending(&self) -> bool {
        self.physical_id.is_none()
    }

    /// What happened to the change in flight, as `state list` and the plan
    /// tell it: `create in flight when its run ended`, `update refused by
    /// AWS: ...`.
    pub fn unfinished_text(&self) -> Option<String> {
        let u = self.unfinished.clone().or_else(|| {
            self.is_pending().then(|| Unfinished {
                operation: Operation::Create,
                outcome: Outcome::InFlight,
                props: None,
            })
        })?;
        Some(format!("{} {}", u.operation.as_str(), u.outcome.describe()))
    }
}

/// A change stackctl began on a resource.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// How a change of stackctl's own ended, as far as it knows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "message")]
pub enum Outcome {
    /// Recorded before its call; its run ended before the answer (killed,
    /// stopped on a second interrupt).
    InFlight,
    /// AWS refused it with an error code: it changed nothing.
    Refused(String),
    /// Sent and its answer lost: AWS may have acted on it.
    MaybeSent(String),
}

impl Outcome {
    pub fn describe(&self) -> String {
        match self {
            Outcome::InFlight => "in flight when its run ended".into(),
            Outcome::Refused(m) => format!("refused by AWS ({m})"),
            Outcome::MaybeSent(m) => format!("sent with its answer lost ({m})"),
        }
    }
}

/// A change in flight on a resource, recorded before its call is sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unfinished {
    pub operation: Operation,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// For an update: the properties it sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub props: Option<Props>,
}

/// An object replaced create-before-destroy: its successor exists, and it is
/// deleted once whatever used it has moved over. Recorded so that a crash in
/// between leaves nothing behind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deposed {
    pub id: String,
    #[serde(flatten)]
    pub record: ResourceState,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    /// Increases with every write: a saved plan made against another serial is stale.
    pub serial: u64,
    /// Identifies this state's history across copies and backups; assigned at
    /// the first write, so plans made before any state exists agree on it.
    pub lineage: String,
    pub stack: String,
    /// Where the resources live (`<account>/<region>`), recorded with the first
    /// resource: the same state used with other credentials or another region
    /// is refused instead of seeing everything as deleted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    pub resources: BTreeMap<String, Rec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deposed: Vec<Deposed>,
    pub outputs: BTreeMap<String, Value>,
    /// Outputs whose values come from sensitive ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_outputs: Vec<String>,
    /// The last write it holds, `<run>/<serial>`: the next journal entry
    /// names it as the one it follows, so a replay takes only an unbroken
    /// chain from this state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub head: String,
}

impl State {
    /// The record of `id`, if the state has one.
    pub fn record(&self, id: &str) -> Option<&ResourceState> {
        self.resources.get(id).map(|r| &**r)
    }

    /// The physical ids of the objects recorded as replaced at `id` and not
    /// yet deleted.
    pub fn deposed_ids(&self, id: &str) -> Vec<String> {
        let deposed = self.deposed.iter().filter(|d| d.id == id);
        deposed
            .filter_map(|d| d.record.physical_id.clone())
            .collect()
    }

    pub fn new(stack: &str) -> State {
        State {
            version: STATE_VERSION,
            serial: 0,
            lineage: String::new(),
            stack: stack.to_string(),
            location: String::new(),
            resources: BTreeMap::new(),
            deposed: Vec::new(),
            outputs: BTreeMap::new(),
            sensitive_outputs: Vec::new(),
            head: String::new(),
        }
    }

    /// Assigns the lineage of a state never written (token derivation needs it).
    pub fn ensure_lineage(&mut self) {
        if self.lineage.is_empty() {
            self.lineage = uuid::Uuid::new_v4().to_string();
        }
    }

    /// An idempotency token for a new create of `id`: unique in this lineage
    /// (the serial grows with every write), the same on every retry that
    /// reads it back from the intent.
    pub fn new_create_token(&mut self, id: &str) -> String {
        self.ensure_lineage();
        let seed = format!("{}/{id}/{}", self.lineage, self.serial + 1);
        let digest = <sha2::Sha256 as sha2::Digest>::digest(seed.as_bytes());
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        // UUID-shaped: accepted by every API that takes a client token.
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// The account a run must use because resources are recorded in it
    /// (`pin_location` refuses any other).
    pub fn pinned_account(&self) -> Option<&str> {
        let account = self.location.split_once('/').map(|(account, _)| account);
        account.filter(|_| self.records_resources())
    }

    fn records_resources(&self) -> bool {
        !(self.resources.is_empty() && self.deposed.is_empty())
    }

    /// Renames a logical id, with every record and deposed object that
    /// names it.
    pub fn move_record(&mut self, old: &str, new: &str) -> Result<(), String> {
        if self.resources.contains_key(new) {
            return Err(format!("`{new}` is already in the state"));
        }
        if !crate::config::expr::is_address(new) {
            return Err(format!(
                "`{new}`: logical ids must match [a-z][a-z0-9_]*; one instance of a collection is `id[\"key\"]`"
            ));
        }
        let rec = self
            .resources
            .remove(old)
            .ok_or_else(|| self.not_recorded(old))?;
        self.resources.insert(new.to_string(), rec);
        for r in self.resources.values_mut() {
            for d in r.depends_on.iter_mut().filter(|d| *d == old) {
                *d = new.to_string();
            }
        }
        for d in self.deposed.iter_mut().filter(|d| d.id == old) {
            d.id = new.to_string();
        }
        Ok(())
    }

    /// Forgets these records (all of them, or none when one is not there).
    pub fn forget(&mut self, ids: &[String]) -> Result<Vec<(String, ResourceState)>, String> {
        if let Some(missing) = ids.iter().find(|id| !self.resources.contains_key(*id)) {
            return Err(self.not_recorded(missing));
        }
        Ok(ids
            .iter()
            .filter_map(|id| Some((id.clone(), (*self.resources.remove(id)?).clone())))
            .collect())
    }

    fn not_recorded(&self, id: &str) -> String {
        let recorded: Vec<&str> = self.resources.keys().map(String::as_str).collect();
        format!(
            "no resource `{id}` in the state (recorded: {})",
            if recorded.is_empty() {
                "none".into()
            } else {
                recorded.join(", ")
            }
        )
    }

    /// Why `incoming` may not replace this state (`state push`, `state
    /// migrate`; None: it may): a state of another stack; once this one was
    /// written or records anything (resources or deposed objects), one of
    /// another lineage, or an older serial of the same lineage.
    pub fn refuses_replacement_by(&self, incoming: &State) -> Option<String> {
        if incoming.stack != self.stack {
            return Some(format!(
                "it is the state of stack `{}`, not `{}`",
                incoming.stack, self.stack
            ));
        }
        if self.serial == 0 && self.lineage.is_empty() && !self.records_resources() {
            return None;
        }
        let holding = format!(
            "{} resources, {} deposed objects",
            self.resources.len(),
            self.deposed.len()
        );
        if incoming.lineage != self.lineage {
            return Some(format!(
                "it is of lineage {}, the state there of {} ({holding}): another history of this stack",
                incoming.lineage, self.lineage
            ));
        }
        if incoming.serial < self.serial {
            return Some(format!(
                "it is serial {}, older than the state's {} there ({holding})",
                incoming.serial, self.serial
            ));
        }
        None
    }

    /// Refuses a run against another account or region than the one the
    /// resources were recorded in; records the location of a state that has
    /// none yet.
    pub fn pin_location(&mut self, current: &str, state_location: &str) -> Result<(), StateError> {
        let path = PathBuf::from(state_location);
        if self.location.is_empty() {
            self.location = current.to_string();
            return Ok(());
        }
        if self.location != current && self.records_resources() {
            return Err(StateError::WrongAccount {
                path,
                recorded: describe_location(&self.location),
                current: describe_location(current),
            });
        }
        self.location = current.to_string();
        Ok(())
    }
}

/// `<account>/<region>` as people read it.
pub fn describe_location(location: &str) -> String {
    match location.split_once('/') {
        Some((account, region)) => format!("account {account}, region {region}"),
        None => location.to_string(),
    }
}

/// Who holds a lock, as the lock records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub pid: u32,
    pub host: String,
    pub time: String,
    pub operation: String,
    /// What, beside the pid, tells whether the holder is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessId>,
}

/// A process as only its machine's kernel knows it: the boot, the pid
/// namespace and the start time. Containers share host names, not pid
/// namespaces, and pids are reused: a host name and a pid alone prove
/// nothing about a lock's holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessId {
    pub boot: String,
    pub pid_namespace: String,
    /// In clock ticks after boot (/proc/PID/stat, field 22).
    pub started: u64,
}

impl ProcessId {
    /// This process, where /proc tells.
    pub fn current() -> Option<ProcessId> {
        Some(ProcessId {
            boot: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()?
                .trim()
                .to_string(),
            pid_namespace: std::fs::read_link("/proc/self/ns/pid")
                .ok()?
                .to_string_lossy()
                .into_owned(),
            started: start_time("self")?,
        })
    }

    /// Whether the process `pid` this names is provably gone: it ran on
    /// this boot of this machine in this pid namespace, and no process with
    /// its pid and start time runs now.
    pub fn is_gone(&self, pid: u32) -> bool {
        let Some(here) = ProcessId::current() else {
            return false;
        };
        here.boot == self.boot
            && here.pid_namespace == self.pid_namespace
            && start_time(&pid.to_string()) != Some(self.started)
    }
}

/// A process's start time from /proc (the field after its name, which may
/// hold spaces and parentheses, is the 3rd; the start time the 22nd).
fn start_time(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

impl LockInfo {
    pub fn new(operation: &str) -> LockInfo {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            operation: operation.to_string(),
            process: ProcessId::current(),
        }
    }

    /// Whether its holder ran on this machine and is provably gone (a crash
    /// that could not release the lock).
    pub fn holder_is_gone(&self) -> bool {
        let here = gethostname::gethostname().to_string_lossy().into_owned();
        self.host == here
            && self.pid != std::process::id()
            && self.process.as_ref().is_some_and(|p| p.is_gone(self.pid))
    }

    pub fn describe(&self) -> String {
        format!(
            "`stackctl {}` (pid {} on {}, since {}, lock id {})",
            self.operation, self.pid, self.host, self.time, self.id
        )
    }
}

/// A run's hold on a lock that another run can force away (S3's): checked
/// before every write and, at most this old, before every AWS call, so a
/// run that stalled while its lock was forced stops before its next change.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Fails once the lock is no longer this run's; reads it again when the
    /// last confirmation is older than `max_age` (wall-clock time: a laptop
    /// asleep counts).
    async fn confirm(&self, max_age: std::time::Duration) -> Result<(), StateError>;
    /// Whether it was found lost.
    fn is_lost(&self) -> bool;
    /// Whether it was confirmed within `max_age`, without asking again.
    fn fresh(&self, max_age: std::time::Duration) -> bool;
}

/// How long a confirmation of the lease holds before an AWS call.
pub const LEASE_AGE: std::time::Duration = std::time::Duration::from_secs(5);

/// A lock's holder, for force-unlock: who, and whether it may still run.
#[derive(Debug, Clone)]
pub struct Holder {
    pub info: Option<LockInfo>,
    /// Its process is provably gone (a crash on this machine).
    pub gone: bool,
}

/// Whose a lock is: this run's, and the holder it took over from.
#[derive(Debug, Clone)]
pub struct Holding {
    pub info: LockInfo,
    /// The holder a crashed run left, whose lock this run took over.
    pub took_over: Option<LockInfo>,
}

/// A lock a run holds on its state.
#[async_trait]
pub trait Held: Send + Sync {
    fn holding(&self) -> &Holding;
    /// Releases it, if it is still this run's.
    async fn release(self: Box<Self>) -> Result<(), StateError>;
}

/// Where a stack's state lives. Every backend passes the same suite of tests
/// (`tests` below): load, save with the serial it read, journal replay after a
/// crash, locks, force-unlock, lineage, conflicts between writers.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Where, for messages: `state/<stack>.json` or `s3://bucket/key`.
    fn location(&self) -> String;

    /// The state with its journal replayed into it (what a run that died
    /// wrote, or entries not yet folded in); an empty state for a stack
    /// never applied.
    async fn load(&mut self, stack: &str) -> Result<State, StateError>;

    /// Makes the state durable as it is now: a journal entry with what changed
    /// since the last write, the serial bumped. Nothing when nothing changed.
    async fn save(&mut self, state: &mut State) -> Result<(), StateError>;

    /// Writes the whole state and clears the journal.
    async fn compact(&mut self, state: &mut State) -> Result<(), StateError>;

    /// The end of a run: the state made durable, its journal folded into
    /// the whole state when that is due (here, always).
    async fn settle(&mut self, state: &mut State) -> Result<(), StateError> {
        self.compact(state).await
    }

    /// What failed after the state was saved (a journal left behind), for
    /// the run to report as warnings; each is given once.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// Takes the lock, or fails at once naming its holder.
    async fn lock(&self, operation: &str) -> Result<Box<dyn Held>, StateError>;

    /// Clears a lock whose holder is gone or stalled, given the id its error
    /// printed; where that holder could still write later (S3), the state is
    /// fenced against it first.
    async fn force_unlock(&mut self, id: &str) -> Result<String, StateError>;

    /// Who holds the lock now, if anyone (before a force-unlock asks).
    async fn holder(&self) -> Result<Option<Holder>, StateError> {
        Ok(None)
    }

    /// The lease of the lock this backend took, where another run can force
    /// it away.
    fn lease(&self) -> Option<std::sync::Arc<dyn Lease>> {
        None
    }

    /// The encryption keys of this run.
    fn keys(&self) -> &crate::seal::Keys;

    /// What the user should know about where the state lives (a bucket
    /// without versioning keeps no history).
    async fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Rewrites what the backend keeps encrypted with the current key
    /// (reading it with the current or the previous one): the last step of a
    /// key rotation. Returns how many objects it rewrote.
    async fn rekey(&mut self, stack: &str) -> Result<usize, StateError>;
}

/// One journal entry: what changed in the state since the previous write.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub serial: u64,
    pub lineage: String,
    /// The stack it belongs to (empty in entries written before they named it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stack: String,
    /// The run that wrote it (a random id per run; empty in entries written
    /// before entries named their run).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// The write it follows: the `head` of the state it was made from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub follows: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, Rec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposed: Option<Vec<Deposed>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive_outputs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// What a state object is, as encryption binds it (`seal`): the state
/// (and its backups) of a stack.
pub fn state_context(stack: &str) -> String {
    format!("state of {stack}")
}

/// A journal entry of a stack, under its serial.
pub fn journal_context(stack: &str, serial: u64) -> String {
    format!("journal of {stack}, serial {serial}")
}

/// A saved plan.
pub const PLAN_CONTEXT: &str = "saved plan";

/// Refuses an entry of another stack, or one whose encryption names another
/// serial than it holds (an entry copied over another).
pub fn check_entry(
    entry: &Entry,
    stack: &str,
    context: Option<&str>,
    location: &str,
) -> Result<(), StateError> {
    if !entry.stack.is_empty() && entry.stack != stack {
        return Err(StateError::WrongStack {
            path: PathBuf::from(location),
            found: entry.stack.clone(),
            expected: stack.to_string(),
        });
    }
    match context.filter(|c| !c.is_empty()) {
        Some(c) if c != journal_context(stack, entry.serial) => Err(StateError::Corrupt {
            path: PathBuf::from(location),
            message: format!(
                "a journal entry of serial {} is encrypted as the {c}: entries were swapped",
                entry.serial
            ),
            backups: "the backups".into(),
        }),
        _ => Ok(()),
    }
}

impl Entry {
    /// `<run>/<serial>`: what the state's head becomes once it is replayed.
    pub fn id(&self) -> String {
        format!("{}/{}", self.run, self.serial)
    }
}

/// A run's id, named by every journal entry and state it writes.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The next journal entry of run `run`: what changed since `last`, under
/// the next serial, following `last`'s head. `state` then holds it: its
/// serial and head are the entry's.
pub fn next_entry(last: &State, state: &mut State, run: &str) -> Entry {
    state.ensure_lineage();
    state.serial = last.serial.max(state.serial) + 1;
    state.head = format!("{run}/{}", state.serial);
    Entry {
        run: run.to_string(),
        follows: last.head.clone(),
        ..delta(last, state)
    }
}

/// What changed from `before` to `after` (whose serial the entry carries).
pub fn delta(before: &State, after: &State) -> Entry {
    Entry {
        serial: after.serial,
        lineage: after.lineage.clone(),
        stack: after.stack.clone(),
        run: String::new(),
        follows: String::new(),
        set: after
            .resources
            .iter()
            .filter(|(id, rec)| before.resources.get(*id) != Some(*rec))
            .map(|(id, rec)| (id.clone(), rec.clone()))
            .collect(),
        remove: before
            .resources
            .keys()
            .filter(|id| !after.resources.contains_key(*id))
            .cloned()
            .collect(),
        deposed: (before.deposed != after.deposed).then(|| after.deposed.clone()),
        outputs: (before.outputs != after.outputs).then(|| after.outputs.clone()),
        sensitive_outputs: (before.sensitive_outputs != after.sensitive_outputs)
            .then(|| after.sensitive_outputs.clone()),
        location: (before.location != after.location).then(|| after.location.clone()),
    }
}

/// Gives a state that differs from the last one written a serial after both
/// (and run `run`'s head at it), and returns its file form: the whole
/// state, compacted.
pub fn compacted(
    last: Option<&State>,
    state: &mut State,
    run: &str,
) -> Result<Vec<u8>, serde_json::Error> {
    state.ensure_lineage();
    if last != Some(&*state) {
        state.serial = last.map_or(state.serial, |l| l.serial.max(state.serial)) + 1;
        state.head = format!("{run}/{}", state.serial);
    }
    let mut body = serde_json::to_vec_pretty(state)?;
    body.push(b'\n');
    Ok(body)
}

/// Replays journal entries into the state: only an unbroken chain from it,
/// each entry following the state's head as the previous one left it, in
/// the state's lineage. Returns the entries newer than the state that are
/// not part of that chain: written by a run that had lost its lock (forced
/// away while it stalled), after another run had moved the state on.
/// Entries written before entries named their run follow by serial.
pub fn replay(state: &mut State, mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by_key(|e| e.serial);
    entries.dedup_by_key(|e| e.id());
    loop {
        let follows = |e: &Entry| {
            e.serial > state.serial
                && (state.lineage.is_empty() || e.lineage == state.lineage)
                && (e.run.is_empty() || e.follows == state.head)
        };
        let Some(next) = entries.iter().position(follows) else {
            break;
        };
        let e = entries.remove(next);
        if !e.run.is_empty() {
            state.head = e.id();
        }
        state.lineage = e.lineage;
        state.serial = e.serial;
        state.resources.extend(e.set);
        for id in e.remove {
            state.resources.remove(&id);
        }
        if let Some(d) = e.deposed {
            state.deposed = d;
        }
        if let Some(o) = e.outputs {
            state.outputs = o;
        }
        if let Some(s) = e.sensitive_outputs {
            state.sensitive_outputs = s;
        }
        if let Some(l) = e.location {
            state.location = l;
        }
    }
    entries.retain(|e| e.serial > state.serial);
    entries
}

/// The warning for entries a replay left out.
pub fn broken_chain(location: &str, left: &[Entry]) -> Option<String> {
    let first = left.first()?;
    Some(format!(
        "{location}: {} journal entr{} from serial {} on {} not continue this state (written by run {} after its lock was taken away): left out, and deleted at the next write",
        left.len(),
        if left.len() == 1 { "y" } else { "ies" },
        first.serial,
        if left.len() == 1 { "does" } else { "do" },
        first.run
    ))
}

/// Checks a state read from a backend: the version and the stack it is for.
pub fn checked(state: State, stack: &str, location: &str) -> Result<State, StateError> {
    if state.version != STATE_VERSION {
        return Err(StateError::Corrupt {
            path: PathBuf::from(location),
            message: format!(
                "version {} is not supported (expected {STATE_VERSION})",
                state.version
            ),
            backups: "the backend's earlier versions".into(),
        });
    }
    if state.stack != stack {
        return Err(StateError::WrongStack {
            path: PathBuf::from(location),
            found: state.stack,
            expected: stack.into(),
        });
    }
    Ok(state)
}

/// The backend a stack names: `backend: {s3: {bucket, key, region}}` in the
/// stack file (each setting overridable with `--backend-config k=v`), or the
/// local file beside the stack file.
/// The wall clock a lease is timed by. On the simulation's threads it is
/// simulated (dst::wall_clock), so how fast the machine runs a seed does not
/// change what the seed does.
pub(crate) fn wall_clock() -> std::time::SystemTime {
    #[cfg(test)]
    if let Some(simulated) = crate::dst::wall_clock() {
        return simulated;
    }
    std::time::SystemTime::now()
}

pub async fn open(
    stack: &crate::config::Stack,
    overrides: &[(String, String)],
) -> Result<Box<dyn Backend>, StateError> {
    let mut settings = stack.backend.clone();
    for (k, v) in overrides {
        if !["bucket", "key", "region", "kms_key_id", "type"].contains(&k.as_str()) {
            return Err(StateError::Backend(format!(
                "--backend-config {k}=...: unknown setting (expected bucket, key, region or kms_key_id)"
            )));
        }
        settings.insert(k.clone(), v.clone());
    }
    let s3 = settings.get("type").map(String::as_str) == Some("s3")
        || (!settings.contains_key("type") && settings.contains_key("bucket"));
    if !s3 {
        return Ok(Box::new(local::StateFile::for_stack(
            &stack.dir(),
            &stack.name,
        )));
    }
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = crate::providers::effective_region(stack.region.as_deref()) {
        loader = loader.region(aws_config::Region::new(region));
    }
    Ok(Box::new(s3::S3Backend::new(
        &loader.load().await,
        &settings,
        &stack.name,
    )?))
}

/// A state's place given as a URL: `s3://bucket/key`, or a path to a local
/// state file's stack directory (`file://DIR` or a plain path).
pub fn settings_of(url: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        out.insert("type".into(), "s3".into());
        out.insert("bucket".into(), bucket.into());
        if !key.is_empty() {
            out.insert("key".into(), key.into());
        }
    } else {
        out.insert("type".into(), "local".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ResourceState {
        ResourceState {
            type_name: "aws_sns_topic".into(),
            physical_id: Some(format!("arn:{id}")),
            props: Props::new(),
            attrs: Map::new(),
            depends_on: vec![],
            create_token: None,
            sensitive: Vec::new(),
            unfinished: None,
        }
    }

    #[test]
    fn only_an_account_with_resources_recorded_is_presumed() {
        let mut s = State::new("demo");
        s.location = "111111111111/us-east-2".into();
        assert_eq!(
            s.pinned_account(),
            None,
            "another account may still take it"
        );
        s.resources.insert("topic".into(), record("topic").into());
        assert_eq!(s.pinned_account(), Some("111111111111"));
    }

    #[test]
    fn the_location_is_pinned_once_resources_are_recorded() {
        let path = "state/demo.json";
        let mut s = State::new("demo");
        s.pin_location("111111111111/us-east-2", path).unwrap();
        s.pin_location("222222222222/eu-west-1", path).unwrap(); // nothing recorded yet
        s.resources.insert("topic".into(), record("topic").into());
        let err = s
            .pin_location("111111111111/us-east-2", path)
            .unwrap_err()
            .to_string();
        assert_contains!(err, "records resources in account 222222222222, region eu-west-1, but this run uses account 111111111111, region us-east-2");
    }

    #[test]
    fn a_move_renames_the_record_and_whatever_names_it() {
        let mut s = State::new("demo");
        s.resources.insert("dlq".into(), record("dlq").into());
        let mut user = record("user");
        user.depends_on = vec!["dlq".into()];
        s.resources.insert("user".into(), user.into());
        s.deposed.push(Deposed {
            id: "dlq".into(),
            record: record("old"),
        });
        s.move_record("dlq", "dead_letters").unwrap();
        assert!(s.resources.contains_key("dead_letters") && !s.resources.contains_key("dlq"));
        assert_eq!(s.resources["user"].depends_on, ["dead_letters"]);
        assert_eq!(s.deposed[0].id, "dead_letters");
        assert!(s
            .move_record("user", "dead_letters")
            .unwrap_err()
            .contains("already in the state"));
        assert!(s
            .move_record("user", "Bad-Id")
            .unwrap_err()
            .contains("logical ids must match"));
        assert!(s
            .move_record("nope", "x")
            .unwrap_err()
            .contains("recorded: dead_letters, user"));
    }

    #[test]
    fn forgetting_takes_all_the_records_named_or_none() {
        let mut s = State::new("demo");
        for id in ["a", "b"] {
            s.resources.insert(id.into(), record(id).into());
        }
        let err = s.forget(&["a".into(), "c".into()]).unwrap_err();
        assert_contains!(err, "no resource `c`");
        assert_eq!(s.resources.len(), 2, "none forgotten");
        let gone = s.forget(&["a".into()]).unwrap();
        assert_eq!(gone[0].0, "a");
        assert_eq!(s.resources.keys().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn a_state_refuses_another_stack_another_lineage_and_an_older_serial() {
        let mut here = State::new("demo");
        let mut incoming = State::new("demo");
        incoming.lineage = "L".into();
        incoming.serial = 3;
        assert_eq!(
            here.refuses_replacement_by(&incoming),
            None,
            "never written"
        );
        here.lineage = "L".into();
        here.serial = 5;
        assert!(here
            .refuses_replacement_by(&incoming)
            .unwrap()
            .contains("serial 3, older than the state's 5"));
        incoming.serial = 5;
        assert_eq!(here.refuses_replacement_by(&incoming), None);
        incoming.lineage = "M".into();
        assert!(here
            .refuses_replacement_by(&incoming)
            .unwrap()
            .contains("another history"));
        incoming.stack = "other".into();
        assert!(here
            .refuses_replacement_by(&incoming)
            .unwrap()
            .contains("stack `other`"));
        // Deposed objects are content, even in a state whose serial says nothing.
        let mut only_deposed = State::new("demo");
        only_deposed.deposed.push(Deposed {
            id: "old".into(),
            record: record("old"),
        });
        let mut other = State::new("demo");
        other.lineage = "M".into();
        assert!(only_deposed
            .refuses_replacement_by(&other)
            .unwrap()
            .contains("1 deposed objects"));
    }

    #[test]
    fn create_tokens_are_stable_per_serial_and_unique_across_ids_and_serials() {
        let mut s = State::new("demo");
        let a = s.new_create_token("queue");
        assert_eq!(a, s.new_create_token("queue"));
        assert_ne!(a, s.new_create_token("topic"));
        s.serial += 1;
        assert_ne!(a, s.new_create_token("queue"));
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn a_journal_replayed_over_the_state_rebuilds_every_write() {
        let mut s = State::new("demo");
        s.lineage = "L".into();
        let base = s.clone();
        let mut entries = Vec::new();
        let mut before = s.clone();
        for (n, id) in ["a", "b", "c"].iter().enumerate() {
            s.serial = n as u64 + 1;
            s.resources.insert(id.to_string(), record(id).into());
            if *id == "c" {
                s.resources.remove("a");
                s.outputs.insert("o".into(), Value::from(1));
            }
            entries.push(delta(&before, &s));
            before = s.clone();
        }
        // Out of order, with a duplicate and one of another lineage.
        let mut stray = entries[0].clone();
        stray.lineage = "other".into();
        stray.serial = 9;
        let mut shuffled = vec![
            entries[2].clone(),
            stray,
            entries[0].clone(),
            entries[1].clone(),
            entries[0].clone(),
        ];
        let mut rebuilt = base;
        replay(&mut rebuilt, std::mem::take(&mut shuffled));
        assert_eq!(rebuilt, s);
    }

    /// A run that stalled with the lock forced away (A) writes on after
    /// another run (B) moved the state on and compacted it: A's entries
    /// follow a head the state no longer has, however their serials line
    /// up, and are left out.
    #[test]
    fn only_an_unbroken_chain_from_the_state_is_replayed() {
        let mut a = State::new("demo");
        a.lineage = "L".into();
        let mut entries = Vec::new();
        let mut last = a.clone();
        for id in ["x", "y"] {
            a.resources.insert(id.into(), record(id).into());
            entries.push(next_entry(&last, &mut a, "A"));
            last = a.clone();
        }
        // B read A's two entries, wrote its own and compacted at serial 5.
        let mut b = State::new("demo");
        replay(&mut b, entries.clone());
        assert_eq!((b.serial, b.head.as_str()), (2, "A/2"));
        let mut b_last = b.clone();
        for id in ["z", "w"] {
            b.resources.insert(id.into(), record(id).into());
            next_entry(&b_last, &mut b, "B");
            b_last = b.clone();
        }
        let mut saved = b.clone();
        saved.outputs.insert("o".into(), Value::from("B's"));
        compacted(Some(&b_last), &mut saved, "B").unwrap();
        assert_eq!(saved.serial, 5);
        // A wakes and writes four entries: serials 3 to 6, past B's 5.
        let mut stale = Vec::new();
        for n in 0..4 {
            a.outputs
                .insert("o".into(), Value::from(format!("A's {n}")));
            a.resources.remove("x");
            stale.push(next_entry(&last, &mut a, "A"));
            last = a.clone();
        }
        let mut loaded = saved.clone();
        let left = replay(&mut loaded, stale);
        assert_eq!(loaded, saved, "B's state stands");
        assert_eq!(
            left.len(),
            1,
            "the entry past B's serial is left out: {left:?}"
        );
        assert!(broken_chain("s3://b/k", &left)
            .unwrap()
            .contains("from serial 6 on does not continue this state (written by run A"));
    }

    #[test]
    fn an_entry_of_another_stack_or_encrypted_as_another_serial_is_refused() {
        let mut s = State::new("demo");
        let e = next_entry(&State::new("demo"), &mut s, "R");
        assert_eq!(e.stack, "demo");
        assert!(check_entry(&e, "demo", Some(&journal_context("demo", 1)), "j").is_ok());
        assert!(check_entry(&e, "demo", None, "j").is_ok(), "plain, no key");
        assert!(matches!(
            check_entry(&e, "other", None, "j"),
            Err(StateError::WrongStack { .. })
        ));
        let err = check_entry(&e, "demo", Some(&journal_context("demo", 7)), "j").unwrap_err();
        assert!(err.to_string().contains("entries were swapped"), "{err}");
    }

    #[test]
    fn entries_written_before_they_named_their_run_replay_in_serial_order() {
        let mut s = State::new("demo");
        s.lineage = "L".into();
        let mut before = s.clone();
        let mut entries = Vec::new();
        for (n, id) in ["a", "b"].iter().enumerate() {
            s.serial = n as u64 + 1;
            s.resources.insert(id.to_string(), record(id).into());
            entries.push(delta(&before, &s));
            before = s.clone();
        }
        let mut rebuilt = State::new("demo");
        rebuilt.lineage = "L".into();
        assert!(replay(&mut rebuilt, entries).is_empty());
        assert_eq!(rebuilt.resources.len(), 2);
    }

    #[test]
    fn an_entry_holds_only_what_changed() {
        let mut a = State::new("demo");
        for id in ["x", "y", "z"] {
            a.resources.insert(id.into(), record(id).into());
        }
        let mut b = a.clone();
        b.serial = 1;
        b.resources.get_mut("y").unwrap().physical_id = Some("changed".into());
        let e = delta(&a, &b);
        assert_eq!(e.set.keys().collect::<Vec<_>>(), ["y"]);
        assert!(e.remove.is_empty() && e.outputs.is_none() && e.deposed.is_none());
    }

    #[test]
    fn backend_urls_name_s3_objects_or_the_local_file() {
        let s = settings_of("s3://team-state/prod/pipeline.json");
        assert_eq!(s["bucket"], "team-state");
        assert_eq!(s["key"], "prod/pipeline.json");
        assert_eq!(settings_of("local")["type"], "local");
    }
}

//! The state file: what stackctl created, as it applied it and as AWS reported
//! it. Written atomically after every AWS call that changes something (and
//! only then: a run that changes nothing leaves serial and backups alone), with
//! the file as it was before the run kept among a few numbered backups, and
//! guarded by a lock that dies with the process holding it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
    #[error("state {path} records resources in {recorded}, but this run uses {current}: with it, everything would look deleted and be created again. Use the credentials and region of {recorded} (AWS_PROFILE, AWS_REGION), or another stack name for {current}")]
    WrongAccount {
        path: PathBuf,
        recorded: String,
        current: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
}

impl ResourceState {
    pub fn is_pending(&self) -> bool {
        self.physical_id.is_none()
    }
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
    pub resources: BTreeMap<String, ResourceState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deposed: Vec<Deposed>,
    pub outputs: BTreeMap<String, Value>,
    /// Outputs whose values come from sensitive ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_outputs: Vec<String>,
}

impl State {
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

    /// Refuses a run against another account or region than the one the
    /// resources were recorded in; records the location of a state that has
    /// none yet.
    pub fn pin_location(&mut self, current: &str, path: &Path) -> Result<(), StateError> {
        if self.location.is_empty() {
            self.location = current.to_string();
            return Ok(());
        }
        if self.location != current && !(self.resources.is_empty() && self.deposed.is_empty()) {
            return Err(StateError::WrongAccount {
                path: path.to_path_buf(),
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

/// Where a stack's state lives: `state/<stack>.json` beside the stack file.
#[derive(Debug, Clone)]
pub struct StateFile {
    pub path: PathBuf,
    /// The encryption keys from the environment, if any are set.
    pub keys: crate::seal::Keys,
    key_error: Option<String>,
    backed_up: bool,
    /// The state as last read or written: saving an unchanged state writes
    /// nothing and keeps the serial, so a no-op run leaves saved plans valid.
    last: Option<State>,
}

impl StateFile {
    pub fn for_stack(stack_dir: &Path, stack: &str) -> StateFile {
        let (keys, key_error) = match crate::seal::Keys::from_env() {
            Ok(keys) => (keys, None),
            Err(e) => (crate::seal::Keys::default(), Some(e.to_string())),
        };
        StateFile {
            path: stack_dir.join("state").join(format!("{stack}.json")),
            keys,
            key_error,
            backed_up: false,
            last: None,
        }
    }

    fn check_keys(&self) -> Result<(), StateError> {
        match &self.key_error {
            Some(message) => Err(StateError::Read {
                path: self.path.clone(),
                source: io::Error::other(message.clone()),
            }),
            None => Ok(()),
        }
    }

    pub fn lock_path(&self) -> PathBuf {
        self.path.with_extension("json.lock")
    }

    /// `n` from 1 (the newest) to BACKUPS.
    pub fn backup_path(&self, n: usize) -> PathBuf {
        let stem = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.path.with_file_name(format!("{stem}.backup.{n}"))
    }

    /// The recorded state, or an empty one for a stack never applied.
    pub fn load(&mut self, stack: &str) -> Result<State, StateError> {
        self.check_keys()?;
        let bytes = match fs::read(&self.path) {
            Ok(b) => crate::seal::open(&self.keys, &b, &self.path.display().to_string())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let state = State::new(stack);
                self.last = Some(state.clone());
                return Ok(state);
            }
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let corrupt = |message: String| StateError::Corrupt {
            path: self.path.clone(),
            message,
            backups: self.backup_path(1).display().to_string(),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(corrupt(format!(
                "version {} is not supported (expected {STATE_VERSION})",
                state.version
            )));
        }
        if state.stack != stack {
            return Err(StateError::WrongStack {
                path: self.path.clone(),
                found: state.stack,
                expected: stack.into(),
            });
        }
        self.last = Some(state.clone());
        Ok(state)
    }

    /// Writes the state if it changed since it was read or last written: bumps
    /// the serial and replaces the file atomically (temp file, fsync, rename,
    /// fsync of the directory). The first write of a run first keeps the file
    /// it replaces as `<stack>.backup.1`, shifting older backups up.
    pub fn save(&mut self, state: &mut State) -> Result<(), StateError> {
        if self.last.as_ref() == Some(state) {
            return Ok(());
        }
        let fail = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(fail)?;
        state.ensure_lineage();
        state.serial += 1;
        let mut body = serde_json::to_vec_pretty(state).map_err(|e| fail(io::Error::other(e)))?;
        body.push(b'\n');
        let body = crate::seal::seal(&self.keys, &body, &self.path.display().to_string())?;
        if !self.backed_up {
            self.rotate_backups().map_err(fail)?;
            self.backed_up = true;
        }
        if let Err(e) = write_atomic(&self.path, &body) {
            state.serial -= 1;
            return Err(fail(e));
        }
        self.last = Some(state.clone());
        Ok(())
    }

    /// Encrypts the state and its backups with the current key (reading them
    /// with the current or the previous one): the last step of a key
    /// rotation. Returns how many files it rewrote.
    pub fn rekey(&mut self) -> Result<usize, StateError> {
        self.check_keys()?;
        let mut n = 0;
        let files: Vec<PathBuf> = std::iter::once(self.path.clone())
            .chain((1..=BACKUPS).map(|i| self.backup_path(i)))
            .collect();
        for path in files {
            let Ok(bytes) = fs::read(&path) else { continue };
            let what = path.display().to_string();
            let plain = crate::seal::open(&self.keys, &bytes, &what)?;
            let sealed = crate::seal::seal(&self.keys, &plain, &what)?;
            write_atomic(&path, &sealed).map_err(|source| StateError::Write {
                path: path.clone(),
                source,
            })?;
            n += 1;
        }
        Ok(n)
    }

    fn rotate_backups(&self) -> io::Result<()> {
        if !self.path.exists() {
            return Ok(());
        }
        for n in (1..BACKUPS).rev() {
            match fs::rename(self.backup_path(n), self.backup_path(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        write_atomic(&self.backup_path(1), &fs::read(&self.path)?)
    }
}

/// Writes a file only its owner can read, atomically: a saved plan.
pub fn write_private(path: &Path, body: &[u8]) -> io::Result<()> {
    write_atomic(path, body)
}

fn write_atomic(path: &Path, body: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub pid: u32,
    pub host: String,
    pub time: String,
    pub operation: String,
}

impl LockInfo {
    pub fn describe(&self) -> String {
        format!(
            "`stackctl {}` (pid {} on {}, since {}, lock id {})",
            self.operation, self.pid, self.host, self.time, self.id
        )
    }
}

/// An exclusive lock on a stack's state: an OS advisory lock (flock) on the
/// lock file, which the kernel releases when the process ends however it ends
/// (kill -9 and out-of-memory kills included), so a crash never leaves a lock
/// behind. The file also names the holder for the error a second run gets.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
    pub info: LockInfo,
    /// The holder named in the lock file when this run took the lock: a run
    /// that ended without releasing it (the kernel released its flock).
    pub took_over: Option<LockInfo>,
}

fn read_info(f: &mut File) -> Option<LockInfo> {
    let mut text = String::new();
    f.seek(io::SeekFrom::Start(0)).ok()?;
    f.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

impl Lock {
    pub fn acquire(file: &StateFile, operation: &str) -> Result<Lock, StateError> {
        let path = file.lock_path();
        let write_err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let mut f = open_lock_file(&path).map_err(write_err)?;
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let info = read_info(&mut f);
                return Err(StateError::Locked {
                    holder: info.as_ref().map_or_else(
                        || "another run (it has not named itself yet)".to_string(),
                        LockInfo::describe,
                    ),
                    id: info.map(|i| i.id).unwrap_or_default(),
                    path,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(write_err(e)),
        }
        // Whatever the file names, its process is gone: it held the flock.
        let took_over = read_info(&mut f);
        let info = LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            operation: operation.to_string(),
        };
        let body = serde_json::to_vec(&info).map_err(|e| write_err(io::Error::other(e)))?;
        f.set_len(0)
            .and_then(|()| f.seek(io::SeekFrom::Start(0)))
            .and_then(|_| f.write_all(&body))
            .and_then(|()| f.sync_all())
            .map_err(write_err)?;
        Ok(Lock {
            file: f,
            path,
            info,
            took_over,
        })
    }

    /// Clears a lock whose holder is gone, given the id its error printed.
    /// A lock held by a live process cannot be taken: it ends with it.
    pub fn force_unlock(file: &StateFile, id: &str) -> Result<String, StateError> {
        let path = file.lock_path();
        let mut f = match File::options().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok("The state was not locked.".into())
            }
            Err(source) => return Err(StateError::Write { path, source }),
        };
        let info = read_info(&mut f);
        if let Some(info) = info.as_ref().filter(|i| i.id != id) {
            return Err(StateError::Write {
                path,
                source: io::Error::other(format!(
                    "the lock's id is {}, not {id}: check which run holds it ({})",
                    info.id,
                    info.describe()
                )),
            });
        }
        match f.try_lock() {
            Ok(()) => {
                let _ = f.set_len(0);
                Ok(match info {
                    Some(i) => format!("Cleared the lock of {}; that run had ended.", i.describe()),
                    None => "The state was not locked.".into(),
                })
            }
            Err(fs::TryLockError::WouldBlock) => Err(StateError::Locked {
                holder: info
                    .as_ref()
                    .map_or_else(|| "another run".into(), LockInfo::describe),
                id: id.to_string(),
                path,
            }),
            Err(fs::TryLockError::Error(source)) => Err(StateError::Write { path, source }),
        }
    }
}

impl Drop for Lock {
    /// Clears the holder's name if the lock is still this run's (the flock
    /// itself goes with the file handle).
    fn drop(&mut self) {
        match read_info(&mut self.file) {
            Some(info) if info.id == self.info.id => {
                let _ = self.file.set_len(0);
            }
            Some(info) => eprintln!(
                "warning: the lock file {} now names {}, not this run; left as it is",
                self.path.display(),
                info.describe()
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn missing_state_is_empty_and_gets_a_lineage_when_first_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::for_stack(dir.path(), "demo");
        let mut s = f.load("demo").unwrap();
        assert_eq!((s.serial, s.lineage.as_str()), (0, ""));
        assert!(s.resources.is_empty());
        s.outputs.insert("x".into(), Value::from(1));
        f.save(&mut s).unwrap();
        assert_eq!(s.lineage.len(), 36);
        assert_eq!(f.load("demo").unwrap().lineage, s.lineage);
    }

    fn saved_with_output(f: &mut StateFile, s: &mut State, n: i64) {
        s.outputs.insert("n".into(), Value::from(n));
        f.save(s).unwrap();
    }

    #[test]
    fn save_is_atomic_private_and_keeps_bounded_backups() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::for_stack(dir.path(), "demo");
        let mut s = f.load("demo").unwrap();
        saved_with_output(&mut f, &mut s, 0);
        assert_eq!(s.serial, 1);
        assert!(
            !f.backup_path(1).exists(),
            "nothing to back up on the first write"
        );
        let mode = fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Each run backs up what it found, once; older backups shift up and
        // the oldest beyond BACKUPS goes.
        for run in 1..=BACKUPS + 2 {
            let mut f = StateFile::for_stack(dir.path(), "demo");
            let mut s = f.load("demo").unwrap();
            saved_with_output(&mut f, &mut s, run as i64);
            saved_with_output(&mut f, &mut s, run as i64 + 100);
        }
        let serial_of = |p: PathBuf| -> u64 {
            serde_json::from_str::<State>(&fs::read_to_string(p).unwrap())
                .unwrap()
                .serial
        };
        let f = StateFile::for_stack(dir.path(), "demo");
        let newest = serial_of(f.path.clone());
        assert_eq!(serial_of(f.backup_path(1)), newest - 2);
        assert_eq!(
            serial_of(f.backup_path(BACKUPS)),
            newest - 2 * BACKUPS as u64
        );
        assert!(!f.backup_path(BACKUPS + 1).exists());
        let leftovers: Vec<_> = fs::read_dir(f.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn saving_an_unchanged_state_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::for_stack(dir.path(), "demo");
        let mut s = f.load("demo").unwrap();
        saved_with_output(&mut f, &mut s, 1);
        let mut f = StateFile::for_stack(dir.path(), "demo");
        let mut s = f.load("demo").unwrap();
        f.save(&mut s).unwrap();
        assert_eq!(s.serial, 1);
        assert!(!f.backup_path(1).exists());
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file_and_the_serial_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::for_stack(dir.path(), "demo");
        let mut s = f.load("demo").unwrap();
        saved_with_output(&mut f, &mut s, 1);
        // The state file's place is taken by a directory: the rename fails.
        fs::remove_file(&f.path).unwrap();
        fs::create_dir_all(f.path.join("blocked")).unwrap();
        s.outputs.insert("n".into(), Value::from(2));
        assert!(matches!(f.save(&mut s), Err(StateError::Write { .. })));
        assert_eq!(s.serial, 1);
        let names: Vec<_> = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    }

    #[test]
    fn state_of_another_stack_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::for_stack(dir.path(), "demo");
        let mut other = State::new("other");
        other.outputs.insert("x".into(), Value::from(1));
        f.save(&mut other).unwrap();
        assert!(matches!(f.load("demo"), Err(StateError::WrongStack { .. })));
        fs::write(&f.path, "{not json").unwrap();
        assert!(matches!(f.load("demo"), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn the_location_is_pinned_once_resources_are_recorded() {
        let path = Path::new("state/demo.json");
        let mut s = State::new("demo");
        s.pin_location("111111111111/us-east-2", path).unwrap();
        s.pin_location("222222222222/eu-west-1", path).unwrap(); // nothing recorded yet
        s.resources.insert(
            "topic".into(),
            ResourceState {
                type_name: "aws_sns_topic".into(),
                physical_id: Some("arn".into()),
                props: Props::new(),
                attrs: Map::new(),
                depends_on: vec![],
                create_token: None,
                sensitive: Vec::new(),
            },
        );
        let err = s
            .pin_location("111111111111/us-east-2", path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("records resources in account 222222222222, region eu-west-1, but this run uses account 111111111111, region us-east-2"),
            "{err}"
        );
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
    fn lock_is_exclusive_names_its_holder_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::for_stack(dir.path(), "demo");
        let lock = Lock::acquire(&f, "apply").unwrap();
        let err = Lock::acquire(&f, "plan").unwrap_err().to_string();
        assert!(err.contains("`stackctl apply`"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains(&format!("lock id {}", lock.info.id)), "{err}");
        drop(lock);
        Lock::acquire(&f, "plan").unwrap();
    }

    #[test]
    fn releasing_leaves_a_lock_file_that_names_another_run_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::for_stack(dir.path(), "demo");
        let lock = Lock::acquire(&f, "apply").unwrap();
        let other = r#"{"id":"other","pid":1,"host":"h","time":"t","operation":"apply"}"#;
        fs::write(f.lock_path(), other).unwrap();
        drop(lock);
        assert_eq!(fs::read_to_string(f.lock_path()).unwrap(), other);
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::for_stack(dir.path(), "demo");
        fs::create_dir_all(f.lock_path().parent().unwrap()).unwrap();
        fs::write(
            f.lock_path(),
            r#"{"id":"dead","pid":4194303,"host":"h","time":"2026-11-25T10:00:00Z","operation":"apply"}"#,
        )
        .unwrap();
        let lock = Lock::acquire(&f, "plan").unwrap();
        assert_eq!(lock.info.operation, "plan");
        assert_eq!(lock.took_over.as_ref().unwrap().id, "dead");
    }

    #[test]
    fn force_unlock_needs_the_lock_id_and_cannot_take_a_live_lock() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::for_stack(dir.path(), "demo");
        let lock = Lock::acquire(&f, "apply").unwrap();
        let id = lock.info.id.clone();
        assert!(Lock::force_unlock(&f, "wrong-id")
            .unwrap_err()
            .to_string()
            .contains(&format!("the lock's id is {id}")));
        assert!(matches!(
            Lock::force_unlock(&f, &id),
            Err(StateError::Locked { .. })
        ));
        std::mem::forget(lock); // as if the process had died: its info stays
                                // (the flock of a forgotten handle stays too; a new process would not see it)
    }
}

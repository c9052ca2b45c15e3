//! The state file: what stackctl created, as it applied it and as AWS reported
//! it. Written atomically after every AWS call that changes something, with the
//! file as it was before the run kept as a backup, and guarded by a lock.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::schema::Props;

pub const STATE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the state is locked by {holder}\n  lock file: {path}\n  if that run is no longer going on, run `stackctl force-unlock`")]
    Locked { holder: String, path: PathBuf },
    #[error("cannot read state {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("state {path} is not valid stackctl state: {message}; the previous state is in {path}.backup")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot write state {path}: {source}; the previous state is untouched")]
    Write { path: PathBuf, source: io::Error },
    #[error("state {path} belongs to stack `{found}`, not `{expected}`")]
    WrongStack {
        path: PathBuf,
        found: String,
        expected: String,
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
}

impl ResourceState {
    pub fn is_pending(&self) -> bool {
        self.physical_id.is_none()
    }
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
    pub resources: BTreeMap<String, ResourceState>,
    pub outputs: BTreeMap<String, Value>,
}

impl State {
    pub fn new(stack: &str) -> State {
        State {
            version: STATE_VERSION,
            serial: 0,
            lineage: String::new(),
            stack: stack.to_string(),
            resources: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }
}

/// Where a stack's state lives: `state/<stack>.json` beside the stack file.
#[derive(Debug, Clone)]
pub struct StateFile {
    pub path: PathBuf,
    backed_up: bool,
}

impl StateFile {
    pub fn for_stack(stack_dir: &Path, stack: &str) -> StateFile {
        StateFile {
            path: stack_dir.join("state").join(format!("{stack}.json")),
            backed_up: false,
        }
    }

    pub fn lock_path(&self) -> PathBuf {
        self.path.with_extension("json.lock")
    }

    pub fn backup_path(&self) -> PathBuf {
        self.path.with_extension("json.backup")
    }

    /// The recorded state, or an empty one for a stack never applied.
    pub fn load(&self, stack: &str) -> Result<State, StateError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::new(stack)),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let state: State = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Corrupt {
                path: self.path.clone(),
                message: format!(
                    "version {} is not supported (expected {STATE_VERSION})",
                    state.version
                ),
            });
        }
        if state.stack != stack {
            return Err(StateError::WrongStack {
                path: self.path.clone(),
                found: state.stack,
                expected: stack.into(),
            });
        }
        Ok(state)
    }

    /// Bumps the serial and replaces the file atomically: temp file, fsync,
    /// rename, fsync of the directory. The first save of a run keeps the file it
    /// replaces as `<stack>.json.backup`.
    pub fn save(&mut self, state: &mut State) -> Result<(), StateError> {
        let fail = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(fail)?;
        state.serial += 1;
        if state.lineage.is_empty() {
            state.lineage = uuid::Uuid::new_v4().to_string();
        }
        let mut body = serde_json::to_vec_pretty(state).map_err(|e| fail(io::Error::other(e)))?;
        body.push(b'\n');
        if !self.backed_up {
            if self.path.exists() {
                write_atomic(&self.backup_path(), &fs::read(&self.path).map_err(fail)?)
                    .map_err(fail)?;
            }
            self.backed_up = true;
        }
        write_atomic(&self.path, &body).map_err(fail)
    }
}

fn write_atomic(path: &Path, body: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct LockInfo {
    pid: u32,
    host: String,
    time: String,
    operation: String,
}

/// An exclusive lock on a stack's state, released on drop.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    pub fn acquire(file: &StateFile, operation: &str) -> Result<Lock, StateError> {
        let path = file.lock_path();
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|source| StateError::Write {
            path: path.clone(),
            source,
        })?;
        let info = LockInfo {
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            operation: operation.to_string(),
        };
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let body = serde_json::to_string(&info).unwrap_or_default();
                f.write_all(body.as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|source| StateError::Write {
                        path: path.clone(),
                        source,
                    })?;
                Ok(Lock { path })
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StateError::Locked {
                holder: describe_holder(&path),
                path,
            }),
            Err(source) => Err(StateError::Write { path, source }),
        }
    }

    /// Removes a lock left by a run that died. Returns whether there was one.
    pub fn force_unlock(file: &StateFile) -> io::Result<bool> {
        match fs::remove_file(file.lock_path()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn describe_holder(path: &Path) -> String {
    let Ok(info) = fs::read_to_string(path)
        .map_err(|_| ())
        .and_then(|t| serde_json::from_str::<LockInfo>(&t).map_err(|_| ()))
    else {
        return "another run (unreadable lock file)".to_string();
    };
    let here = gethostname::gethostname().to_string_lossy().into_owned();
    let gone = info.host == here && !Path::new("/proc").join(info.pid.to_string()).exists();
    format!(
        "`stackctl {}` (pid {} on {}, since {}){}",
        info.operation,
        info.pid,
        info.host,
        info.time,
        if gone {
            "; that process no longer runs"
        } else {
            ""
        }
    )
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
        f.save(&mut s).unwrap();
        assert_eq!(s.lineage.len(), 36);
        assert_eq!(f.load("demo").unwrap().lineage, s.lineage);
    }

    #[test]
    fn save_is_atomic_private_and_keeps_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::for_stack(dir.path(), "demo");
        let mut s = State::new("demo");
        f.save(&mut s).unwrap();
        assert_eq!(s.serial, 1);
        assert!(
            !f.backup_path().exists(),
            "nothing to back up on the first write"
        );
        let mode = fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // A new run backs up what it found, once.
        let mut f = StateFile::for_stack(dir.path(), "demo");
        let mut s = f.load("demo").unwrap();
        s.outputs.insert("x".into(), Value::from(1));
        f.save(&mut s).unwrap();
        f.save(&mut s).unwrap();
        let backup: State =
            serde_json::from_str(&fs::read_to_string(f.backup_path()).unwrap()).unwrap();
        assert_eq!(backup.serial, 1);
        assert_eq!(f.load("demo").unwrap().serial, 3);
        let leftovers: Vec<_> = fs::read_dir(f.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn state_of_another_stack_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::for_stack(dir.path(), "demo");
        f.save(&mut State::new("other")).unwrap();
        assert!(matches!(f.load("demo"), Err(StateError::WrongStack { .. })));
        fs::write(&f.path, "{not json").unwrap();
        assert!(matches!(f.load("demo"), Err(StateError::Corrupt { .. })));
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
        assert!(err.contains("stackctl force-unlock"), "{err}");
        drop(lock);
        let again = Lock::acquire(&f, "plan").unwrap();
        std::mem::forget(again); // as if the process died holding it
        assert!(Lock::force_unlock(&f).unwrap());
        assert!(!Lock::force_unlock(&f).unwrap());
        Lock::acquire(&f, "plan").unwrap();
    }

    #[test]
    fn lock_of_a_dead_process_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::for_stack(dir.path(), "demo");
        fs::create_dir_all(f.lock_path().parent().unwrap()).unwrap();
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        fs::write(
            f.lock_path(),
            format!(r#"{{"pid":4194303,"host":"{host}","time":"2026-11-25T10:00:00Z","operation":"apply"}}"#),
        )
        .unwrap();
        let err = Lock::acquire(&f, "plan").unwrap_err().to_string();
        assert!(err.contains("that process no longer runs"), "{err}");
    }
}

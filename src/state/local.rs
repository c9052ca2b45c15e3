//! The local backend: `state/<stack>.json` beside the stack file, its journal
//! `state/<stack>.journal` (one line per write during a run, each fsynced),
//! a few numbered backups, and a lock that dies with the process holding it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{
    check_entry, checked, journal_context, next_entry, replay, state_context, Backend, Entry, Held,
    Holding, LockInfo, State, StateError, BACKUPS,
};

/// Where a stack's state lives: `state/<stack>.json` beside the stack file.
#[derive(Debug, Clone)]
pub struct StateFile {
    pub path: PathBuf,
    /// The encryption keys from the environment, if any are set.
    pub keys: crate::seal::Keys,
    key_error: Option<String>,
    backed_up: bool,
    /// The journal's length up to its last whole line, when a crash cut its
    /// last line short: cut there before appending.
    journal_whole: Option<u64>,
    /// The state as last read or written: saving an unchanged state writes
    /// nothing and keeps the serial, so a no-op run leaves saved plans valid.
    last: Option<State>,
    /// The files as this run last read or wrote them: another writer that
    /// changed them since (a run without the lock) is a conflict, not
    /// something to overwrite.
    seen: Option<Seen>,
    /// This run's id, named by what it writes.
    run: String,
}

/// What the state file and journal were: the file's inode and length, the
/// journal's length (0 when absent).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    file: Option<(u64, u64)>,
    journal: u64,
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
            journal_whole: None,
            last: None,
            seen: None,
            run: super::new_run_id(),
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

    pub fn journal_path(&self) -> PathBuf {
        self.path.with_extension("journal")
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

    fn now_seen(&self) -> Seen {
        use std::os::unix::fs::MetadataExt;
        Seen {
            file: fs::metadata(&self.path).ok().map(|m| (m.ino(), m.len())),
            journal: fs::metadata(self.journal_path()).map_or(0, |m| m.len()),
        }
    }

    /// Fails when another writer changed the files since this run saw them.
    fn unchanged_since_seen(&self) -> Result<(), StateError> {
        match self.seen {
            Some(seen) if seen != self.now_seen() => Err(StateError::Conflict {
                location: self.path.display().to_string(),
                read: self.last.as_ref().map_or(0, |l| l.serial),
            }),
            _ => Ok(()),
        }
    }

    fn fail(&self, source: io::Error) -> StateError {
        StateError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// The recorded state with the journal of an interrupted run replayed.
    pub fn read(&mut self, stack: &str) -> Result<State, StateError> {
        self.check_keys()?;
        let what = self.path.display().to_string();
        let mut state = match fs::read(&self.path) {
            Ok(b) => {
                let bytes = crate::seal::open(&self.keys, &b, &what, &state_context(stack))?;
                let state: State =
                    serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                        path: self.path.clone(),
                        message: e.to_string(),
                        backups: self.backup_path(1).display().to_string(),
                    })?;
                checked(state, stack, &what)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => State::new(stack),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let seen = self.now_seen();
        // The local lock cannot be taken from a live run: nothing writes
        // outside the chain but a hand edit, which is left out.
        replay(&mut state, self.journal(stack)?);
        self.seen = Some(seen);
        self.last = Some(state.clone());
        Ok(state)
    }

    fn journal(&mut self, stack: &str) -> Result<Vec<Entry>, StateError> {
        let text = match fs::read_to_string(self.journal_path()) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.journal_path(),
                    source,
                })
            }
        };
        let what = self.journal_path().display().to_string();
        let mut entries = Vec::new();
        let mut whole = 0;
        for line in text.split_inclusive('\n') {
            // A line cut short by a crash mid-write was never acknowledged: it
            // is the last one, and its call was not sent.
            if !line.ends_with('\n') {
                self.journal_whole = Some(whole as u64);
                break;
            }
            whole += line.len();
            if line.trim().is_empty() {
                continue;
            }
            let (plain, context) =
                crate::seal::open_any(&self.keys, line.trim_end().as_bytes(), &what)?;
            match serde_json::from_slice::<Entry>(&plain) {
                Ok(e) => {
                    check_entry(&e, stack, context.as_deref(), &what)?;
                    entries.push(e);
                }
                Err(_) => {
                    self.journal_whole = Some((whole - line.len()) as u64);
                    break;
                }
            }
        }
        Ok(entries)
    }

    /// Appends what changed since the last write to the journal, fsynced.
    pub fn append(&mut self, state: &mut State) -> Result<(), StateError> {
        let Some(last) = self.last.clone() else {
            return self.write(state);
        };
        if &last == state {
            return Ok(());
        }
        self.unchanged_since_seen()?;
        self.first_write_of_run()?;
        let entry = next_entry(&last, state, &self.run);
        let plain = serde_json::to_vec(&entry).map_err(|e| self.fail(io::Error::other(e)))?;
        let mut line = crate::seal::seal(
            &self.keys,
            &plain,
            &self.journal_path().display().to_string(),
            &journal_context(&state.stack, entry.serial),
        )?;
        // An encrypted line is pretty JSON: fold it onto one line.
        line.retain(|b| *b != b'\n');
        line.push(b'\n');
        let cut = self.journal_whole.take();
        let appended = (|| {
            fs::create_dir_all(self.path.parent().unwrap_or(Path::new(".")))?;
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.journal_path())?;
            if let Some(len) = cut {
                f.set_len(len)?;
            }
            f.write_all(&line)?;
            f.sync_all()
        })();
        if let Err(e) = appended {
            (state.serial, state.head) = (last.serial, last.head);
            return Err(self.fail(e));
        }
        self.seen = Some(self.now_seen());
        self.last = Some(state.clone());
        Ok(())
    }

    /// Writes the whole state atomically (temp file, fsync, rename, fsync of
    /// the directory), then removes the journal it holds.
    pub fn write(&mut self, state: &mut State) -> Result<(), StateError> {
        let journal_exists = self.journal_path().exists();
        if self.last.as_ref() == Some(state) && !journal_exists {
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| self.fail(e))?;
        self.unchanged_since_seen()?;
        self.first_write_of_run()?;
        let previous = (state.serial, state.head.clone());
        let body = super::compacted(self.last.as_ref(), state, &self.run)
            .map_err(|e| self.fail(io::Error::other(e)))?;
        let body = crate::seal::seal(
            &self.keys,
            &body,
            &self.path.display().to_string(),
            &state_context(&state.stack),
        )?;
        if let Err(e) = write_atomic(&self.path, &body) {
            (state.serial, state.head) = previous;
            return Err(self.fail(e));
        }
        match fs::remove_file(self.journal_path()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(self.fail(e)),
            _ => {}
        }
        self.journal_whole = None;
        self.seen = Some(self.now_seen());
        self.last = Some(state.clone());
        Ok(())
    }

    /// Before the first write of a run: the state file as it was becomes
    /// `<stack>.backup.1`, older backups shifting up.
    fn first_write_of_run(&mut self) -> Result<(), StateError> {
        if self.backed_up {
            return Ok(());
        }
        self.rotate_backups().map_err(|e| self.fail(e))?;
        self.backed_up = true;
        Ok(())
    }

    /// Encrypts the state and its backups with the current key (reading them
    /// with the current or the previous one): the last step of a key
    /// rotation. Returns how many files it rewrote.
    /// Rewrites the state, its backups and its journal with the current key
    /// (read with the current or the previous one; a plain state is read too:
    /// this is how a state is encrypted for the first time).
    pub fn rekey(&mut self, stack: &str) -> Result<usize, StateError> {
        self.check_keys()?;
        let keys = crate::seal::Keys {
            accept_plain: true,
            ..self.keys.clone()
        };
        let context = state_context(stack);
        let mut n = 0;
        let files: Vec<PathBuf> = std::iter::once(self.path.clone())
            .chain((1..=BACKUPS).map(|i| self.backup_path(i)))
            .collect();
        for path in files {
            let Ok(bytes) = fs::read(&path) else { continue };
            let what = path.display().to_string();
            let plain = crate::seal::open(&keys, &bytes, &what, &context)?;
            let sealed = crate::seal::seal(&keys, &plain, &what, &context)?;
            write_atomic(&path, &sealed).map_err(|source| StateError::Write {
                path: path.clone(),
                source,
            })?;
            n += 1;
        }
        let journal = self.journal_path();
        if let Ok(text) = fs::read_to_string(&journal) {
            let what = journal.display().to_string();
            let mut out = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let (plain, _) = crate::seal::open_any(&keys, line.as_bytes(), &what)?;
                let Ok(entry) = serde_json::from_slice::<Entry>(&plain) else {
                    break; // cut short by a crash: never acknowledged
                };
                let mut sealed =
                    crate::seal::seal(&keys, &plain, &what, &journal_context(stack, entry.serial))?;
                sealed.retain(|b| *b != b'\n');
                out.extend(sealed);
                out.push(b'\n');
            }
            write_atomic(&journal, &out).map_err(|source| StateError::Write {
                path: journal.clone(),
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

#[async_trait]
impl Backend for StateFile {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn load(&mut self, stack: &str) -> Result<State, StateError> {
        self.read(stack)
    }

    async fn save(&mut self, state: &mut State) -> Result<(), StateError> {
        // A few hundred bytes appended and fsynced: cheap next to the call it records.
        blocking(|| self.append(state))
    }

    async fn compact(&mut self, state: &mut State) -> Result<(), StateError> {
        blocking(|| self.write(state))
    }

    async fn lock(&self, operation: &str) -> Result<Box<dyn Held>, StateError> {
        Ok(Box::new(Lock::acquire(self, operation)?))
    }

    async fn rekey(&mut self, stack: &str) -> Result<usize, StateError> {
        tokio::task::block_in_place(|| StateFile::rekey(self, stack))
    }

    async fn force_unlock(&mut self, id: &str) -> Result<String, StateError> {
        Lock::force_unlock(self, id)
    }

    fn keys(&self) -> &crate::seal::Keys {
        &self.keys
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

/// Runs file I/O where the runtime allows blocking: beside its other tasks
/// on a multi-threaded runtime, inline on a single-threaded one (the
/// deterministic simulation's, whose clock is paused).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
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
    /// Its holder taken over: named in the lock file when this run took the
    /// lock, a run that ended without releasing it (the kernel released its
    /// flock).
    pub holding: Holding,
}

fn read_info(f: &mut File) -> Option<LockInfo> {
    let mut text = String::new();
    f.seek(io::SeekFrom::Start(0)).ok()?;
    f.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// How long a lock held by a holder that has not named itself is waited for.
const UNNAMED_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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
        // A holder that has not named itself is gone or named in moments: a
        // run that just took the flock, or the handle of a lock just released
        // still open in a child process between fork and exec.
        let named_by = std::time::Instant::now() + UNNAMED_HOLDER_WAIT;
        loop {
            match f.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(write_err(e)),
            }
            let info = read_info(&mut f);
            if info.is_none() && std::time::Instant::now() < named_by {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            return Err(StateError::Locked {
                holder: info.as_ref().map_or_else(
                    || "another run (it has not named itself yet)".to_string(),
                    LockInfo::describe,
                ),
                id: info.map(|i| i.id).unwrap_or_default(),
                path,
            });
        }
        // Whatever the file names, its process is gone: it held the flock.
        let took_over = read_info(&mut f);
        let info = LockInfo::new(operation);
        let body = serde_json::to_vec(&info).map_err(|e| write_err(io::Error::other(e)))?;
        f.set_len(0)
            .and_then(|()| f.seek(io::SeekFrom::Start(0)))
            .and_then(|_| f.write_all(&body))
            .and_then(|()| f.sync_all())
            .map_err(write_err)?;
        Ok(Lock {
            file: f,
            path,
            holding: Holding { info, took_over },
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

#[async_trait]
impl Held for Lock {
    fn holding(&self) -> &Holding {
        &self.holding
    }

    async fn release(self: Box<Self>) -> Result<(), StateError> {
        drop(self);
        Ok(())
    }
}

impl Drop for Lock {
    /// Clears the holder's name if the lock is still this run's (the flock
    /// itself goes with the file handle).
    fn drop(&mut self) {
        match read_info(&mut self.file) {
            Some(info) if info.id == self.holding.info.id => {
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
    use serde_json::Value;
    use std::os::unix::fs::PermissionsExt;

    fn saved_with_output(f: &mut StateFile, s: &mut State, n: i64) {
        s.outputs.insert("n".into(), Value::from(n));
        f.append(s).unwrap();
    }

    /// The file and the state as the next run finds them after a run.
    fn after_a_run(dir: &Path, n: i64) -> (StateFile, State) {
        run(dir, n);
        let mut f = StateFile::for_stack(dir, "demo");
        let s = f.read("demo").unwrap();
        (f, s)
    }

    /// A run: read, two writes to the journal, then compaction.
    fn run(dir: &Path, n: i64) -> State {
        let mut f = StateFile::for_stack(dir, "demo");
        let mut s = f.read("demo").unwrap();
        saved_with_output(&mut f, &mut s, n);
        saved_with_output(&mut f, &mut s, n + 100);
        f.write(&mut s).unwrap();
        s
    }

    /// A flock held without a name is a run between taking it and naming
    /// itself, or a copy of a closed lock's handle in a child process not
    /// yet started (between fork and exec): either is gone in moments.
    #[test]
    fn a_lock_held_without_a_name_is_waited_for_a_moment() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::for_stack(dir.path(), "demo");
        let unnamed = open_lock_file(&file.lock_path()).unwrap();
        unnamed.try_lock().unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(unnamed);
        });
        let lock = Lock::acquire(&file, "apply");
        holder.join().unwrap();
        assert!(lock.is_ok(), "{:?}", lock.err());
    }

    #[test]
    fn compaction_is_atomic_private_and_keeps_bounded_backups() {
        let dir = tempfile::tempdir().unwrap();
        let first = run(dir.path(), 0);
        assert_eq!(first.serial, 2);
        let f = StateFile::for_stack(dir.path(), "demo");
        assert!(
            !f.backup_path(1).exists(),
            "nothing to back up on the first run"
        );
        assert!(
            !f.journal_path().exists(),
            "compaction folds the journal in"
        );
        let mode = fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Each run backs up what it found, once; older backups shift up and
        // the oldest beyond BACKUPS goes.
        for n in 1..=BACKUPS + 2 {
            run(dir.path(), n as i64);
        }
        let serial_of = |p: PathBuf| -> u64 {
            serde_json::from_str::<State>(&fs::read_to_string(p).unwrap())
                .unwrap()
                .serial
        };
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
    fn each_write_of_a_run_appends_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, mut s) = after_a_run(dir.path(), 0);
        for n in 0..50 {
            let mut props = crate::schema::Props::new();
            props.insert("policy".into(), Value::from("x".repeat(1000)));
            s.resources.insert(
                format!("r{n}"),
                super::super::Rec::from(super::super::ResourceState {
                    type_name: "aws_iam_policy".into(),
                    physical_id: Some(format!("p{n}")),
                    props,
                    attrs: Default::default(),
                    depends_on: vec![],
                    create_token: None,
                    sensitive: vec![],
                    unfinished: None,
                }),
            );
        }
        f.append(&mut s).unwrap();
        let big = fs::metadata(f.journal_path()).unwrap().len();
        s.resources.get_mut("r7").unwrap().physical_id = Some("changed".into());
        f.append(&mut s).unwrap();
        let grown = fs::metadata(f.journal_path()).unwrap().len() - big;
        assert!(
            grown < big / 20,
            "a one-resource change appended {grown} bytes"
        );
    }

    #[test]
    fn rekey_covers_the_journal_and_entries_cannot_be_swapped() {
        let dir = tempfile::tempdir().unwrap();
        let key = |b: u8| Some(crate::seal::Key::from_bytes([b; 32]));
        let mut f = StateFile::for_stack(dir.path(), "demo");
        f.keys = crate::seal::Keys {
            current: key(1),
            ..Default::default()
        };
        let mut s = f.read("demo").unwrap();
        for n in 1..=3 {
            s.outputs.insert("n".into(), serde_json::Value::from(n));
            f.append(&mut s).unwrap();
        }
        // Rotation: B writes, A still reads; the journal is rewritten too.
        f.keys = crate::seal::Keys {
            current: key(2),
            previous: key(1),
            accept_plain: false,
        };
        f.rekey("demo").unwrap();
        let mut only_b = StateFile::for_stack(dir.path(), "demo");
        only_b.keys = crate::seal::Keys {
            current: key(2),
            ..Default::default()
        };
        assert_eq!(
            only_b.read("demo").unwrap().outputs["n"],
            serde_json::Value::from(3)
        );
        // Two lines swapped: each names the serial it was written as.
        let text = std::fs::read_to_string(f.journal_path()).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(0, 1);
        std::fs::write(f.journal_path(), lines.join("\n") + "\n").unwrap();
        let mut swapped = StateFile::for_stack(dir.path(), "demo");
        swapped.keys = only_b.keys.clone();
        assert!(
            swapped.read("demo").is_ok(),
            "lines out of order are still entries of their own serial"
        );
        let mut copied: Vec<String> = text.lines().map(str::to_string).collect();
        let entry_2 = copied[1].clone();
        copied[2] = entry_2.replace("serial 2", "serial 3");
        std::fs::write(f.journal_path(), copied.join("\n") + "\n").unwrap();
        let err = swapped.read("demo").unwrap_err().to_string();
        assert_contains!(err, "cannot be decrypted");
    }

    #[test]
    fn a_crashed_runs_journal_is_replayed_and_a_torn_last_line_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, mut s) = after_a_run(dir.path(), 0);
        saved_with_output(&mut f, &mut s, 42);
        // The process dies mid-append: half a line follows.
        let mut j = OpenOptions::new()
            .append(true)
            .open(f.journal_path())
            .unwrap();
        j.write_all(br#"{"serial":99,"lineage":"#).unwrap();
        drop(j);
        let mut f = StateFile::for_stack(dir.path(), "demo");
        let mut again = f.read("demo").unwrap();
        assert_eq!(again, s);
        // The next write cuts the torn line and stays readable.
        saved_with_output(&mut f, &mut again, 43);
        let reread = StateFile::for_stack(dir.path(), "demo")
            .read("demo")
            .unwrap();
        assert_eq!(reread, again);
    }

    #[test]
    fn saving_an_unchanged_state_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, mut s) = after_a_run(dir.path(), 1);
        let serial = s.serial;
        f.append(&mut s).unwrap();
        f.write(&mut s).unwrap();
        assert_eq!(s.serial, serial);
        assert!(!f.backup_path(1).exists());
        assert!(!f.journal_path().exists());
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file_and_the_serial_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = run(dir.path(), 1);
        let mut f = StateFile::for_stack(dir.path(), "demo");
        // The state file's place is taken by a directory: the rename fails.
        fs::remove_file(&f.path).unwrap();
        fs::create_dir_all(f.path.join("blocked")).unwrap();
        s.outputs.insert("n".into(), Value::from(2));
        let serial = s.serial;
        assert!(matches!(f.write(&mut s), Err(StateError::Write { .. })));
        assert_eq!(s.serial, serial);
        let names: Vec<_> = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    }

    #[test]
    fn a_writer_that_did_not_see_the_last_write_fails_instead_of_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), 1);
        let mut a = StateFile::for_stack(dir.path(), "demo");
        let mut b = StateFile::for_stack(dir.path(), "demo");
        let (mut sa, mut sb) = (a.read("demo").unwrap(), b.read("demo").unwrap());
        saved_with_output(&mut a, &mut sa, 2);
        sb.outputs.insert("n".into(), Value::from(3));
        assert!(matches!(
            b.append(&mut sb),
            Err(StateError::Conflict { .. })
        ));
        a.write(&mut sa).unwrap();
        assert!(matches!(b.write(&mut sb), Err(StateError::Conflict { .. })));
        assert_eq!(
            StateFile::for_stack(dir.path(), "demo")
                .read("demo")
                .unwrap(),
            sa
        );
    }

    #[test]
    fn state_of_another_stack_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::for_stack(dir.path(), "demo");
        let mut other = State::new("other");
        other.outputs.insert("x".into(), Value::from(1));
        f.write(&mut other).unwrap();
        assert!(matches!(f.read("demo"), Err(StateError::WrongStack { .. })));
        fs::write(&f.path, "{not json").unwrap();
        assert!(matches!(f.read("demo"), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn lock_is_exclusive_names_its_holder_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::for_stack(dir.path(), "demo");
        let lock = Lock::acquire(&f, "apply").unwrap();
        let err = Lock::acquire(&f, "plan").unwrap_err().to_string();
        assert_contains!(err, "`stackctl apply`");
        assert_contains!(err, &format!("pid {}", std::process::id()));
        assert_contains!(err, &format!("lock id {}", lock.holding.info.id));
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
        assert_eq!(lock.holding.info.operation, "plan");
        assert_eq!(lock.holding.took_over.as_ref().unwrap().id, "dead");
    }

    #[test]
    fn force_unlock_needs_the_lock_id_and_cannot_take_a_live_lock() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::for_stack(dir.path(), "demo");
        let lock = Lock::acquire(&f, "apply").unwrap();
        let id = lock.holding.info.id.clone();
        assert!(Lock::force_unlock(&f, "wrong-id")
            .unwrap_err()
            .to_string()
            .contains(&format!("the lock's id is {id}")));
        assert!(matches!(
            Lock::force_unlock(&f, &id),
            Err(StateError::Locked { .. })
        ));
    }
}

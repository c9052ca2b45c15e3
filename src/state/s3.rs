//! The S3 backend, as Terraform 1.10+ keeps state in S3 without DynamoDB,
//! and stricter: the lock is an object written with `If-None-Match: *`, the
//! state is written with `If-Match` on the ETag it was read with (a writer
//! that lost the race fails instead of overwriting), each journal entry is an
//! object written with `If-None-Match: *` under its serial (two writers of
//! the same serial: one fails), and the bucket's versioning keeps the history.
//! Every write asks for server-side encryption.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{
    broken_chain, check_entry, checked, journal_context, next_entry, replay, state_context,
    Backend, Entry, Held, Holder, Holding, Lease, LockInfo, State, StateError,
};

pub struct S3Backend {
    client: aws_sdk_s3::Client,
    stack: String,
    bucket: String,
    key: String,
    kms_key_id: Option<String>,
    keys: crate::seal::Keys,
    /// The state as read or last written, and the ETag of the state object
    /// then (None: there was none).
    last: Option<State>,
    etag: Option<String>,
    /// Journal objects written by this run (or found at load), for compaction.
    journal: Vec<String>,
    /// The size of the state object and of the journal entries that follow
    /// it: what decides when a run's end folds the journal in.
    state_bytes: usize,
    journal_bytes: usize,
    /// Entries the state object already holds, or that do not continue it,
    /// were found: the next write of the state deletes them.
    stale_entries: bool,
    /// What went wrong after the state was saved, for the run to report.
    warnings: Vec<String>,
    /// This run's id, named by what it writes.
    run: String,
    /// The lock this backend took, checked before every write.
    lease: Mutex<Option<Arc<S3Lease>>>,
}

/// The journal entries past which a run's end folds them into the state
/// object whatever their size: every load reads them.
const FOLD_AT_ENTRIES: usize = 128;

/// An S3 error turned into what a user can act on.
fn s3_error<E: ProvideErrorMetadata>(
    bucket: &str,
    key: &str,
    what: &str,
    e: &E,
    status: Option<u16>,
) -> StateError {
    let code = e.code().unwrap_or_default();
    let message = e.message().unwrap_or_default();
    StateError::Backend(match code {
        "NoSuchBucket" => format!("the state bucket `{bucket}` does not exist: create it (with versioning on) or fix `backend.s3.bucket`"),
        "AccessDenied" | "Forbidden" | "" if !code.is_empty() || status == Some(403) => format!(
            "access to s3://{bucket}/{key} was denied while {what}: the credentials need s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on it"
        ),
        "PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException" => format!(
            "the state bucket `{bucket}` is in another region than the one configured ({message}): set `backend.s3.region` to the bucket's region"
        ),
        _ if status == Some(301) => format!("the state bucket `{bucket}` is in another region: set `backend.s3.region` to the bucket's region"),
        "" => format!("{what} s3://{bucket}/{key} failed (HTTP {}): {message}", status.unwrap_or_default()),
        _ => format!("{what} s3://{bucket}/{key} failed: {code}: {message}"),
    })
}

/// The serial a journal key was written under (`S3Backend::journal_key`).
fn serial_of_journal_key(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.parse().ok()
}

enum Failure {
    Absent,
    Condition,
    Other(StateError),
}

impl Failure {
    fn into_error(self) -> StateError {
        match self {
            Failure::Other(e) => e,
            Failure::Absent => StateError::Backend("the bucket or object does not exist".into()),
            Failure::Condition => {
                StateError::Backend("a condition of the request did not hold".into())
            }
        }
    }
}

fn is(code: Option<&str>, names: &[&str]) -> bool {
    code.is_some_and(|c| names.contains(&c))
}

impl S3Backend {
    /// `settings`: `bucket`, `key`, `region`, optional `kms_key_id`.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        settings: &BTreeMap<String, String>,
        stack: &str,
    ) -> Result<S3Backend, StateError> {
        let bucket = settings.get("bucket").cloned().ok_or_else(|| {
            StateError::Backend(
                "the S3 backend needs `bucket` (backend: {s3: {bucket: ..., key: ...}})".into(),
            )
        })?;
        let key = settings
            .get("key")
            .cloned()
            .unwrap_or_else(|| format!("stackctl/{stack}.json"));
        let mut config = aws_sdk_s3::config::Builder::from(sdk);
        if let Some(region) = settings.get("region") {
            config = config.region(aws_config::Region::new(region.clone()));
        }
        // An endpoint that is not AWS's (a local emulator) is addressed by path.
        let foreign = sdk
            .endpoint_url()
            .is_some_and(|u| !u.contains("amazonaws.com"));
        config = config.force_path_style(foreign);
        let keys = crate::seal::Keys::from_env()?;
        Ok(S3Backend {
            client: aws_sdk_s3::Client::from_conf(config.build()),
            stack: stack.to_string(),
            bucket,
            key,
            kms_key_id: settings.get("kms_key_id").cloned(),
            keys,
            last: None,
            etag: None,
            journal: Vec::new(),
            state_bytes: 0,
            journal_bytes: 0,
            stale_entries: false,
            warnings: Vec::new(),
            run: super::new_run_id(),
            lease: Mutex::new(None),
        })
    }

    /// A client with a retry quota of its own. The SDK shares one quota among
    /// a process's clients of a service; the simulation runs thousands of
    /// backends in one process, and one seed's retries must not spend the
    /// next seed's.
    #[cfg(test)]
    pub(crate) fn with_own_retry_quota(mut self) -> S3Backend {
        use aws_sdk_s3::config::retry::{RetryPartition, TokenBucket};
        let quota = RetryPartition::custom("dst").token_bucket(TokenBucket::default());
        let config = self
            .client
            .config()
            .to_builder()
            .retry_partition(quota.build());
        self.client = aws_sdk_s3::Client::from_conf(config.build());
        self
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    fn journal_prefix(&self) -> String {
        format!("{}.journal/", self.key)
    }

    /// A journal entry's key: its serial, zero-padded so keys sort by it.
    fn journal_key(&self, serial: u64) -> String {
        format!("{}{serial:020}", self.journal_prefix())
    }

    fn fail<E: ProvideErrorMetadata>(&self, what: &str, e: &E, status: Option<u16>) -> StateError {
        s3_error(&self.bucket, &self.key, what, e, status)
    }

    /// What a failed call means: the object is absent, a condition did not
    /// hold, or an error the user must act on.
    fn failure<E>(&self, what: &str, e: SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        if !matches!(e, SdkError::ServiceError(_)) {
            return Failure::Other(StateError::Backend(format!(
                "{what} s3://{}/{} failed (it may or may not have reached S3): {}",
                self.bucket,
                self.key,
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )));
        }
        let code = e.code();
        if status == Some(412)
            || is(code, &["PreconditionFailed", "ConditionalRequestConflict"])
            || status == Some(409)
        {
            Failure::Condition
        } else if is(code, &["NoSuchKey", "NotFound"]) {
            Failure::Absent
        } else {
            Failure::Other(self.fail(what, &e, status))
        }
    }

    /// An object's body and ETag; None when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Option<String>)>, StateError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().map(str::to_string);
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| {
                        StateError::Backend(format!("reading s3://{}/{key}: {e}", self.bucket))
                    })?
                    .into_bytes()
                    .to_vec();
                Ok(Some((body, etag)))
            }
            Err(e) => match self.failure("reading", e) {
                Failure::Absent => Ok(None),
                Failure::Condition => Err(StateError::Backend(format!(
                    "reading s3://{}/{key}: unexpected precondition failure",
                    self.bucket
                ))),
                Failure::Other(e) => Err(e),
            },
        }
    }

    /// Writes an object only if it does not exist (`create`), or only if its
    /// ETag is still `if_match`; the new ETag, or None when the condition
    /// failed. A write whose answer was lost and whose retry then met its
    /// own object is a success: the object holds exactly these bytes.
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        if_match: Option<&str>,
        create: bool,
    ) -> Result<Option<String>, StateError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body.clone()))
            .content_type("application/json");
        req = match &self.kms_key_id {
            Some(kms) => req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms),
            None => req.server_side_encryption(ServerSideEncryption::Aes256),
        };
        if create {
            req = req.if_none_match("*");
        } else if let Some(etag) = if_match {
            req = req.if_match(etag);
        }
        match req.send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
            Err(e) => match self.failure("writing", e) {
                Failure::Condition | Failure::Absent => match self.get(key).await? {
                    Some((found, etag)) if found == body => Ok(etag),
                    _ => Ok(None),
                },
                Failure::Other(e) => Err(e),
            },
        }
    }

    /// Deletes an object (only if its ETag is still `if_match`); false when
    /// that condition failed. An object already gone is deleted.
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<bool, StateError> {
        let mut req = self.client.delete_object().bucket(&self.bucket).key(key);
        if let Some(etag) = if_match {
            req = req.if_match(etag);
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => match self.failure("deleting", e) {
                Failure::Absent => Ok(true),
                Failure::Condition => Ok(false),
                Failure::Other(e) => Err(e),
            },
        }
    }

    /// Deletes the keys a thousand per call (DeleteObjects): a journal of a
    /// thousand entries is gone in one round trip, not a thousand.
    async fn delete_all(&self, keys: &[String]) -> Result<(), StateError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StateError::Backend(e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StateError::Backend(e.to_string()))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.failure("deleting the journal of", e).into_error())?;
            if let Some(e) = out.errors().first() {
                return Err(StateError::Backend(format!(
                    "deleting s3://{}/{} failed: {}: {}",
                    self.bucket,
                    e.key().unwrap_or_default(),
                    e.code().unwrap_or_default(),
                    e.message().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    /// The journal entries written after the state's serial, read in
    /// parallel: what earlier runs saved and did not fold into the state
    /// object, or a run that died left. Entries at or below it (left
    /// when a compaction could not delete them) are in the state already and
    /// are not read; the next compaction deletes them.
    async fn newer_entries(&self, serial: u64) -> Result<(Vec<Entry>, usize), StateError> {
        use futures::{StreamExt, TryStreamExt};
        let newer: Vec<String> = self
            .journal
            .iter()
            .filter(|key| serial_of_journal_key(key).is_none_or(|entry| entry > serial))
            .cloned()
            .collect();
        let read: Vec<Option<(Entry, usize)>> = futures::stream::iter(newer)
            .map(|key| async move { self.entry(&key).await })
            .buffered(16)
            .try_collect()
            .await?;
        let bytes = read.iter().flatten().map(|(_, n)| n).sum();
        Ok((read.into_iter().flatten().map(|(e, _)| e).collect(), bytes))
    }

    /// One journal entry and its size; None when it is gone or unreadable (a
    /// write cut short never completed, so nothing relies on it).
    async fn entry(&self, key: &str) -> Result<Option<(Entry, usize)>, StateError> {
        let Some((bytes, _)) = self.get(key).await? else {
            return Ok(None);
        };
        let what = format!("s3://{}/{key}", self.bucket);
        let (plain, context) = crate::seal::open_any(&self.keys, &bytes, &what)?;
        let Ok(entry) = serde_json::from_slice::<Entry>(&plain) else {
            return Ok(None);
        };
        check_entry(&entry, &self.stack, context.as_deref(), &what)?;
        Ok(Some((entry, bytes.len())))
    }

    async fn journal_keys(&self) -> Result<Vec<String>, StateError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.journal_prefix())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.failure("listing the journal of", e).into_error())?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    /// Whether the bucket keeps versions of the state (its history).
    pub async fn versioning_on(&self) -> Result<bool, StateError> {
        let out = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.failure("reading the versioning of", e).into_error())?;
        Ok(out.status().is_some_and(|s| s.as_str() == "Enabled"))
    }

    fn current_lease(&self) -> Option<Arc<S3Lease>> {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Confirms the lock is still this run's, if it took one.
    async fn confirm_lock(&self) -> Result<(), StateError> {
        match self.current_lease() {
            Some(lease) => lease.confirm(Duration::ZERO).await,
            None => Ok(()),
        }
    }

    fn open_state(&self, bytes: &[u8]) -> Result<Vec<u8>, StateError> {
        Ok(crate::seal::open(
            &self.keys,
            bytes,
            &self.location(),
            &state_context(&self.stack),
        )?)
    }

    /// Writes the state whole at the next serial, while a lock is being
    /// forced away: a write of the run that held it, sent from a machine
    /// that stalled and landing at any time later, then finds the state
    /// object changed (a compaction) or its serial behind the state's (an
    /// entry), and is refused or never replayed. Its lease stops what it
    /// has not sent yet; only the store can refuse what it has. Retried
    /// while such writes land.
    async fn fence(&mut self) -> Result<(), StateError> {
        let stack = self.stack.clone();
        for _ in 0..3 {
            let mut state = self.load(&stack).await?;
            // Compared with nothing read, even an unchanged state moves on.
            self.last = None;
            match self.compact(&mut state).await {
                Err(StateError::Conflict { .. }) => continue,
                written => return written,
            }
        }
        Err(StateError::Backend(format!(
            "the state {} kept changing while its lock was being forced: its holder is still running, so the lock is left in place",
            self.location()
        )))
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn load(&mut self, stack: &str) -> Result<State, StateError> {
        let location = self.location();
        let mut state = match self.get(&self.key).await? {
            Some((bytes, etag)) => {
                self.etag = etag;
                self.state_bytes = bytes.len();
                let plain = self.open_state(&bytes)?;
                let state: State =
                    serde_json::from_slice(&plain).map_err(|e| StateError::Corrupt {
                        path: location.clone().into(),
                        message: e.to_string(),
                        backups: "the bucket's earlier versions of the object".into(),
                    })?;
                checked(state, stack, &location)?
            }
            None => {
                self.etag = None;
                State::new(stack)
            }
        };
        self.journal = self.journal_keys().await?;
        let (entries, bytes) = self.newer_entries(state.serial).await?;
        let read = entries.len();
        let left = replay(&mut state, entries);
        self.warnings.extend(broken_chain(&location, &left));
        self.journal_bytes = bytes;
        self.stale_entries = !left.is_empty() || read < self.journal.len();
        self.last = Some(state.clone());
        Ok(state)
    }

    async fn save(&mut self, state: &mut State) -> Result<(), StateError> {
        let Some(last) = self.last.clone() else {
            return self.compact(state).await;
        };
        if &last == state {
            return Ok(());
        }
        let entry = next_entry(&last, state, &self.run);
        let key = self.journal_key(state.serial);
        let plain = serde_json::to_vec(&entry).map_err(|e| StateError::Backend(e.to_string()))?;
        let body = crate::seal::seal(
            &self.keys,
            &plain,
            &key,
            &journal_context(&self.stack, entry.serial),
        )?;
        let size = body.len();
        // The lock is confirmed beside the write, and the write counts only
        // with it: what follows (the call an intent announces) is not sent by
        // a run whose lock was forced away; an entry it wrote meanwhile
        // follows a head the state no longer has and is never replayed.
        let (written, confirmed) =
            tokio::join!(self.put(&key, body, None, true), self.confirm_lock());
        let failed = match (written, confirmed) {
            (Ok(Some(_)), Ok(())) => None,
            (_, Err(e)) | (Err(e), _) => Some(e),
            (Ok(None), Ok(())) => Some(StateError::Conflict {
                location: self.location(),
                read: last.serial,
            }),
        };
        if let Some(e) = failed {
            (state.serial, state.head) = (last.serial, last.head);
            return Err(e);
        }
        self.journal.push(key);
        self.journal_bytes += size;
        self.last = Some(state.clone());
        Ok(())
    }

    /// Folds the journal into the state object only once the journal has
    /// grown to a quarter of it (or to `FOLD_AT_ENTRIES`, which bounds what a
    /// load reads), or holds entries that are stale: a small change writes a
    /// small entry, and the writes of many runs stay in proportion to what
    /// they changed.
    async fn settle(&mut self, state: &mut State) -> Result<(), StateError> {
        let due = self.last.is_none()
            || self.stale_entries
            || self.journal.len() >= FOLD_AT_ENTRIES
            || self.journal_bytes * 4 >= self.state_bytes;
        match due {
            true => self.compact(state).await,
            false => self.save(state).await,
        }
    }

    async fn compact(&mut self, state: &mut State) -> Result<(), StateError> {
        if self.last.as_ref() == Some(state) && self.journal.is_empty() {
            return Ok(());
        }
        // Never overwrite the state for a run that lost its lock.
        self.confirm_lock().await?;
        let plain = super::compacted(self.last.as_ref(), state, &self.run)
            .map_err(|e| StateError::Backend(e.to_string()))?;
        let body = crate::seal::seal(
            &self.keys,
            &plain,
            &self.location(),
            &state_context(&self.stack),
        )?;
        let size = body.len();
        let written = match self.etag.clone() {
            Some(etag) => self.put(&self.key, body, Some(&etag), false).await?,
            None => self.put(&self.key, body, None, true).await?,
        };
        let Some(etag) = written else {
            return Err(StateError::Conflict {
                location: self.location(),
                read: self.last.as_ref().map_or(0, |l| l.serial),
            });
        };
        self.etag = Some(etag);
        self.state_bytes = size;
        self.journal_bytes = 0;
        self.last = Some(state.clone());
        // The state is saved: a journal left behind is older than it, never
        // read again, and deleted by the next compaction, so a failure to
        // delete it is a warning, not a failed run.
        let journal = std::mem::take(&mut self.journal);
        self.stale_entries = false;
        if let Err(e) = self.delete_all(&journal).await {
            self.journal = journal;
            self.stale_entries = true;
            self.warnings.push(format!(
                "{e}; the state is saved, and the journal entries left are older than it: the next run that writes the state deletes them"
            ));
        }
        Ok(())
    }

    async fn lock(&self, operation: &str) -> Result<Box<dyn Held>, StateError> {
        let info = LockInfo::new(operation);
        let body = serde_json::to_vec(&info).map_err(|e| StateError::Backend(e.to_string()))?;
        let mut took_over = None;
        loop {
            if let Some(etag) = self.put(&self.lock_key(), body.clone(), None, true).await? {
                *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(S3Lease {
                    client: self.client.clone(),
                    bucket: self.bucket.clone(),
                    key: self.lock_key(),
                    etag: etag.clone(),
                    confirmed: Mutex::new(Some(super::wall_clock())),
                    lost: AtomicBool::new(false),
                }));
                return Ok(Box::new(S3Lock {
                    client: self.client.clone(),
                    bucket: self.bucket.clone(),
                    key: self.lock_key(),
                    etag,
                    holding: Holding { info, took_over },
                    released: false,
                }));
            }
            let held = self.get(&self.lock_key()).await?;
            let holder = held
                .as_ref()
                .and_then(|(b, _)| serde_json::from_slice::<LockInfo>(b).ok());
            // A crashed run on this machine is known to be gone: its lock is
            // removed (only that very object, by its ETag) and taken once.
            if let (None, Some(h), Some((_, Some(etag)))) = (&took_over, &holder, &held) {
                if h.holder_is_gone() && self.delete(&self.lock_key(), Some(etag)).await? {
                    took_over = holder;
                    continue;
                }
            }
            return Err(StateError::Locked {
                holder: holder
                    .as_ref()
                    .map_or_else(|| "another run".into(), LockInfo::describe),
                id: holder.map(|h| h.id).unwrap_or_default(),
                path: format!("s3://{}/{}", self.bucket, self.lock_key()).into(),
            });
        }
    }

    async fn force_unlock(&mut self, id: &str) -> Result<String, StateError> {
        let Some((bytes, etag)) = self.get(&self.lock_key()).await? else {
            return Ok("The state was not locked.".into());
        };
        let info: Option<LockInfo> = serde_json::from_slice(&bytes).ok();
        if let Some(info) = info.as_ref().filter(|i| i.id != id) {
            return Err(StateError::Backend(format!(
                "the lock's id is {}, not {id}: check which run holds it ({})",
                info.id,
                info.describe()
            )));
        }
        let changed = || {
            StateError::Backend("the lock changed while it was being cleared: look again".into())
        };
        // The holder is revoked first: the lock becomes this command's (only
        // the object that was read), so the holder's next confirmation fails
        // and no other run starts before the state is fenced.
        let ours = LockInfo::new("force-unlock");
        let body = serde_json::to_vec(&ours).map_err(|e| StateError::Backend(e.to_string()))?;
        let Some(etag) = etag else {
            return Err(changed());
        };
        let Some(etag) = self.put(&self.lock_key(), body, Some(&etag), false).await? else {
            return Err(changed());
        };
        if let Err(e) = self.fence().await {
            return Err(StateError::Backend(format!(
                "{e}; the lock is now this command's: once that is mended, `stackctl force-unlock {}` clears it",
                ours.id
            )));
        }
        if !self.delete(&self.lock_key(), Some(&etag)).await? {
            return Err(changed());
        }
        Ok(match info {
            Some(i) => format!("Removed the lock of {}.", i.describe()),
            None => "Removed an unreadable lock.".into(),
        })
    }

    fn keys(&self) -> &crate::seal::Keys {
        &self.keys
    }

    fn lease(&self) -> Option<Arc<dyn Lease>> {
        self.current_lease().map(|l| l as Arc<dyn Lease>)
    }

    async fn holder(&self) -> Result<Option<Holder>, StateError> {
        let Some((bytes, _)) = self.get(&self.lock_key()).await? else {
            return Ok(None);
        };
        let info: Option<LockInfo> = serde_json::from_slice(&bytes).ok();
        let gone = info.as_ref().is_some_and(LockInfo::holder_is_gone);
        Ok(Some(Holder { info, gone }))
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    async fn notes(&self) -> Vec<String> {
        match self.versioning_on().await {
            Ok(true) => Vec::new(),
            Ok(false) => vec![format!(
                "versioning is off on the state bucket `{}`: an overwritten or deleted state cannot be recovered. Turn it on: aws s3api put-bucket-versioning --bucket {} --versioning-configuration Status=Enabled",
                self.bucket, self.bucket
            )],
            Err(e) => vec![format!("could not read the versioning of the state bucket: {e}")],
        }
    }

    async fn rekey(&mut self, stack: &str) -> Result<usize, StateError> {
        // A plain state is read too: this is how it is encrypted the first time.
        self.keys.accept_plain = true;
        let loaded = self.load(stack).await;
        self.keys.accept_plain = false;
        let mut state = loaded?;
        if self.etag.is_none() && self.journal.is_empty() {
            return Ok(0);
        }
        // Written whole with the current key; the bucket's earlier versions
        // keep the key they were written with.
        self.last = None;
        self.compact(&mut state).await?;
        Ok(1)
    }
}

/// The run's hold on its S3 lock: the lock object it wrote, by its ETag.
pub struct S3Lease {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    etag: String,
    /// When it was last confirmed (wall-clock time: it counts a laptop's sleep).
    confirmed: Mutex<Option<SystemTime>>,
    lost: AtomicBool,
}

impl S3Lease {
    /// Who holds the lock now, for the message of a lost one.
    async fn now_held_by(&self) -> String {
        let held = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await;
        let info = match held {
            Ok(out) => match out.body.collect().await {
                Ok(b) => serde_json::from_slice::<LockInfo>(&b.into_bytes()).ok(),
                Err(_) => None,
            },
            Err(_) => return "nobody holds it now".into(),
        };
        info.map_or_else(
            || "another run holds it now".into(),
            |i| format!("{} holds it now", i.describe()),
        )
    }
}

#[async_trait]
impl Lease for S3Lease {
    async fn confirm(&self, max_age: Duration) -> Result<(), StateError> {
        let location = format!("s3://{}/{}", self.bucket, self.key);
        if self.lost.load(Ordering::SeqCst) {
            return Err(StateError::LockLost {
                location,
                now: "found lost earlier in this run".into(),
            });
        }
        let now = super::wall_clock();
        let last = *self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        if last
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age <= max_age)
        {
            return Ok(());
        }
        let checked = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .if_match(&self.etag)
            .send()
            .await;
        match checked {
            Ok(_) => {
                *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
                Ok(())
            }
            Err(e) if e.raw_response().is_some_and(|r| matches!(r.status().as_u16(), 404 | 412)) => {
                self.lost.store(true, Ordering::SeqCst);
                Err(StateError::LockLost {
                    location,
                    now: self.now_held_by().await,
                })
            }
            Err(e) => Err(StateError::Backend(format!(
                "could not confirm that s3://{}/{} is still this run's lock, so nothing more is changed: {}",
                self.bucket,
                self.key,
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            ))),
        }
    }

    fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    fn fresh(&self, max_age: Duration) -> bool {
        let last = *self.confirmed.lock().unwrap_or_else(|e| e.into_inner());
        !self.is_lost()
            && last
                .and_then(|t| super::wall_clock().duration_since(t).ok())
                .is_some_and(|age| age <= max_age)
    }
}

pub struct S3Lock {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    etag: String,
    holding: Holding,
    released: bool,
}

impl S3Lock {
    async fn remove(&self) -> Result<(), StateError> {
        // If-Match: never delete a lock that is no longer this run's.
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .if_match(&self.etag)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Err(StateError::Backend(format!(
                "the lock s3://{}/{} is no longer this run's (it was forced and taken by another run): its writes may have conflicted; check the state",
                self.bucket, self.key
            ))),
            Err(e) => Err(StateError::Backend(format!("releasing the lock s3://{}/{}: {}", self.bucket, self.key, e.into_service_error()))),
        }
    }
}

#[async_trait]
impl Held for S3Lock {
    fn holding(&self) -> &Holding {
        &self.holding
    }

    async fn release(mut self: Box<Self>) -> Result<(), StateError> {
        self.released = true;
        self.remove().await
    }
}

impl Drop for S3Lock {
    /// A run that ends on an error still releases its lock.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                let _ = tokio::task::block_in_place(|| handle.block_on(self.remove()));
            }
            _ => eprintln!(
                "warning: the lock s3://{}/{} could not be released; `stackctl force-unlock {}` clears it",
                self.bucket, self.key, self.holding.info.id
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::error::ErrorMetadata;

    fn says(code: &str, status: u16) -> String {
        let e = ErrorMetadata::builder().code(code).message("m").build();
        s3_error("team-state", "k.json", "writing", &e, Some(status)).to_string()
    }

    #[test]
    fn s3_errors_say_what_to_do() {
        assert!(says("NoSuchBucket", 404)
            .contains("the state bucket `team-state` does not exist: create it"));
        assert!(says("AccessDenied", 403)
            .contains("was denied while writing: the credentials need s3:GetObject"));
        assert!(
            says("", 403).contains("was denied"),
            "a HEAD answered 403 has no code"
        );
        assert!(says("PermanentRedirect", 301)
            .contains("set `backend.s3.region` to the bucket's region"));
        assert!(says("AuthorizationHeaderMalformed", 400).contains("in another region"));
        assert!(says("SlowDown", 503).contains("SlowDown: m"));
    }

    fn topic(n: usize) -> crate::state::ResourceState {
        crate::state::ResourceState {
            type_name: "aws_sns_topic".into(),
            physical_id: Some(format!("arn:aws:sns:us-east-2:123456789012:topic-{n}")),
            props: [("name".to_string(), format!("topic-{n}").into())]
                .into_iter()
                .collect(),
            attrs: serde_json::Map::new(),
            depends_on: vec![],
            create_token: None,
            sensitive: Vec::new(),
            unfinished: None,
        }
    }

    /// `force-unlock` fences the run it forces out: that run's write, sent
    /// before it stalled and landing after another run changed nothing,
    /// finds its serial behind the state's and is never replayed.
    #[tokio::test]
    async fn a_forced_out_runs_late_write_is_refused() {
        let mem = crate::dst::s3::MemS3::default();
        let mut first = crate::dst::s3_backend(&mem).unwrap();
        let mut state = first.load("dst").await.unwrap();
        state.resources.insert("t0".into(), topic(0).into());
        first.settle(&mut state).await.unwrap();

        let mut stalled = crate::dst::s3_backend(&mem).unwrap();
        let held = stalled.lock("apply").await.unwrap();
        let mut stale = stalled.load("dst").await.unwrap();
        let mut operator = crate::dst::s3_backend(&mem).unwrap();
        operator
            .force_unlock(&held.holding().info.id)
            .await
            .unwrap();
        let mut other = crate::dst::s3_backend(&mem).unwrap();
        let _lock = other.lock("apply").await.unwrap();
        let mut unchanged = other.load("dst").await.unwrap();
        other.settle(&mut unchanged).await.unwrap();

        stale.resources.insert("t1".into(), topic(1).into());
        stalled.save(&mut stale).await.unwrap_err();
        let next = crate::dst::s3_backend(&mem).unwrap().load("dst").await;
        assert_eq!(next.unwrap(), unchanged);
    }

    /// `force-unlock` takes the lock from its holder before it touches the
    /// state: when the state cannot be fenced (here, unreadable), the holder
    /// has lost its lock all the same, and the lock left is the command's.
    #[tokio::test]
    async fn force_unlock_revokes_the_holder_before_it_fences_the_state() {
        let mem = crate::dst::s3::MemS3::default();
        let holder = crate::dst::s3_backend(&mem).unwrap();
        let held = holder.lock("apply").await.unwrap();
        let mut operator = crate::dst::s3_backend(&mem).unwrap();
        let garbage = b"{".to_vec();
        let written = operator.put(crate::dst::STATE_KEY, garbage, None, false);
        written.await.unwrap();
        let refused = operator
            .force_unlock(&held.holding().info.id)
            .await
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("the lock is now this command's"),
            "{refused}"
        );
        let lease = holder.lease().unwrap();
        assert!(lease.confirm(Duration::ZERO).await.is_err());
    }

    /// A run that changes one record writes one journal entry, not the whole
    /// state; once the entries reach a quarter of the state, a run's end
    /// folds them in. Every run reads every earlier run's change.
    #[tokio::test]
    async fn a_small_change_writes_an_entry_and_the_journal_folds_once_grown() {
        let mem = crate::dst::s3::MemS3::default();
        let object = || mem.get(crate::dst::STATE_KEY).expect("the state object");
        let mut first = crate::dst::s3_backend(&mem).unwrap();
        let mut state = first.load("dst").await.unwrap();
        for n in 0..40 {
            state.resources.insert(format!("t{n}"), topic(n).into());
        }
        first.settle(&mut state).await.unwrap();
        let whole = object().len();
        let mut folded_after = Vec::new();
        for run in 1..=20 {
            let (before, (_, bytes_before)) = (object(), mem.written());
            let mut backend = crate::dst::s3_backend(&mem).unwrap();
            let mut state = backend.load("dst").await.unwrap();
            assert_eq!(
                state.resources.len(),
                39 + run,
                "run {run} reads every earlier change"
            );
            state
                .resources
                .insert(format!("t{}", 39 + run), topic(39 + run).into());
            backend.settle(&mut state).await.unwrap();
            if object() != before {
                assert!(backend.journal.is_empty(), "a fold deletes the journal");
                folded_after.push(run);
            } else {
                let written = mem.written().1 - bytes_before;
                assert!(
                    written * 4 < whole as u64,
                    "run {run} wrote {written} bytes of a {whole}-byte state"
                );
            }
        }
        assert!(
            !folded_after.is_empty() && folded_after[0] > 2,
            "folds after runs {folded_after:?}"
        );
    }
}

//! An in-memory S3 behind the SDK's HTTP seam, for the simulation: the real
//! S3 state backend (state/s3.rs) runs over it, its requests built, signed
//! and read by the SDK as against AWS. It serves what the backend sends,
//! with S3's semantics: GetObject, HeadObject (If-Match), PutObject
//! (If-None-Match: *, If-Match), DeleteObject (If-Match), DeleteObjects,
//! ListObjectsV2 (by prefix) and GetBucketVersioning. S3 is strongly
//! consistent for all of these, and so is this. In a faulted run, requests
//! fail as the network and S3 make them fail, drawn from the seed, the run
//! and the request (its method and address, and how many such requests came
//! before it): no connection, 503 SlowDown, or S3 acts and the answer is
//! lost, at times followed by no connection for the next few requests. The
//! SDK retries them as it would against AWS.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// The bucket the simulation's states live in.
pub const BUCKET: &str = "dst-state";

#[derive(Default)]
struct Store {
    /// Objects by key: body and ETag.
    objects: BTreeMap<String, (Vec<u8>, String)>,
    /// Counts the writes, for ETags.
    writes: u64,
    /// Bytes written, for the benchmark.
    written: u64,
    faults: Plan,
}

/// The faults of the current run.
#[derive(Default)]
struct Plan {
    seed: u64,
    run: u64,
    per_mille: u64,
    /// Requests so far in this run, by method and address.
    seen: std::collections::HashMap<(String, String), u64>,
    /// Requests still to find no connection (S3 unreachable for a while).
    down_for: u32,
    /// Requests failed, over all runs.
    failed: u64,
}

/// How one request ends.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Through,
    NoConnection,
    SlowDown,
    /// S3 acts; the answer is lost.
    Lost,
}

/// Requests that find no connection after a lost answer followed by an outage.
const OUTAGE_REQUESTS: u32 = 8;

/// The store, shared by every client made over it, and the network's
/// latency to it (waited on the paused clock).
#[derive(Clone, Default)]
pub struct MemS3(Arc<Mutex<Store>>, Duration);

impl std::fmt::Debug for MemS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemS3")
    }
}

impl MemS3 {
    /// An SDK configuration whose every request this store answers.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        let credentials = Credentials::new("AKIDDST", "dst-secret", None, None, "dst");
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new(super::REGION))
            .endpoint_url("http://s3.dst.test")
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            // A checksum only where S3 requires one (DeleteObjects): a body
            // with a trailing checksum would arrive as a stream.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .http_client(self.clone())
            // It times a body's progress by the machine's clock; bodies here
            // are in memory.
            .stalled_stream_protection(
                aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig::disabled(),
            )
            // As providers::loader retries, without the jitter (drawn from
            // the OS, which a seed does not replay).
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(6)
                    .with_max_backoff(Duration::from_secs(20))
                    .with_use_static_exponential_base(true),
            )
            .build()
    }

    pub fn with_latency(latency: Duration) -> MemS3 {
        MemS3(Arc::default(), latency)
    }

    /// A store whose faulted runs draw their faults from `seed`.
    pub fn seeded(seed: u64) -> MemS3 {
        let mem = MemS3::default();
        mem.store().faults.seed = seed;
        mem
    }

    /// The next run's faults: of its requests, `per_mille` fail.
    pub fn set_faults(&self, per_mille: u64) {
        let faults = &mut self.store().faults;
        faults.run += 1;
        faults.per_mille = per_mille;
        faults.seen.clear();
        faults.down_for = 0;
    }

    /// Requests failed so far.
    pub fn failed(&self) -> u64 {
        self.store().faults.failed
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fate(&self, req: &HttpRequest) -> Fate {
        let faults = &mut self.store().faults;
        if faults.per_mille == 0 {
            return Fate::Through;
        }
        if faults.down_for > 0 {
            faults.down_for -= 1;
            faults.failed += 1;
            return Fate::NoConnection;
        }
        let request = (req.method().to_string(), req.uri().to_string());
        let nth = faults.seen.entry(request.clone()).or_default();
        *nth += 1;
        let mut draw = super::draw(faults.seed, faults.run, (request, *nth));
        if !draw.per_mille(faults.per_mille) {
            return Fate::Through;
        }
        faults.failed += 1;
        match draw.below(4) {
            0 => Fate::NoConnection,
            1 => Fate::SlowDown,
            2 => Fate::Lost,
            _ => {
                faults.down_for = OUTAGE_REQUESTS;
                Fate::Lost
            }
        }
    }

    /// Writes so far, and their bytes.
    pub fn written(&self) -> (u64, u64) {
        let store = self.store();
        (store.writes, store.written)
    }

    /// An object's body, if it exists.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let store = self.store();
        store.objects.get(key).map(|(body, _)| body.clone())
    }

    fn serve(&self, req: &HttpRequest) -> Answer {
        let uri = req.uri();
        let path = uri.split_once("://").map_or(uri, |(_, rest)| rest);
        let path = path.split_once('/').map_or("", |(_, p)| p);
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let key = path
            .strip_prefix(BUCKET)
            .map(|k| percent_decode(k.trim_start_matches('/')));
        let Some(key) = key else {
            return error(404, "NoSuchBucket");
        };
        let header = |h: &str| {
            let value = req.headers().get(h);
            value.map(|v| v.trim_matches('"').to_string())
        };
        let body = req.body().bytes().unwrap_or_default();
        let mut store = self.store();
        match (req.method(), key.is_empty()) {
            (method, true) => bucket(&mut store, method, query, body),
            (method, false) => {
                let conditions = (header("if-match"), header("if-none-match").is_some());
                object(&mut store, method, key, conditions, body)
            }
        }
    }
}

/// A status, headers and a body.
type Answer = (u16, Vec<(&'static str, String)>, String);

/// GetBucketVersioning, ListObjectsV2 and DeleteObjects.
fn bucket(store: &mut Store, method: &str, query: &str, body: &[u8]) -> Answer {
    let param = |p: &str| {
        let pairs = query.split('&');
        pairs
            .into_iter()
            .find_map(|kv| kv.strip_prefix(p)?.strip_prefix('='))
            .map(percent_decode)
    };
    match method {
        "GET" if query.contains("versioning") => (
            200,
            vec![],
            "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>".into(),
        ),
        "GET" => (
            200,
            vec![],
            list(store, &param("prefix").unwrap_or_default()),
        ),
        "POST" if query.contains("delete") => {
            for k in tags_of(&String::from_utf8_lossy(body), "Key") {
                store.objects.remove(&k);
            }
            (200, vec![], "<DeleteResult></DeleteResult>".into())
        }
        _ => error(405, &format!("MethodNotAllowed: {method} on the bucket")),
    }
}

/// GetObject, HeadObject, PutObject and DeleteObject, with their If-Match
/// and If-None-Match: * conditions.
fn object(
    store: &mut Store,
    method: &str,
    key: String,
    (if_match, if_none_match): (Option<String>, bool),
    body: &[u8],
) -> Answer {
    let exists = store.objects.contains_key(&key);
    let holds = match (&if_match, store.objects.get(&key)) {
        (Some(want), Some((_, have))) => want == have,
        (Some(_), None) => false,
        (None, _) => true,
    };
    match method {
        "GET" | "HEAD" => match store.objects.get(&key) {
            None => error(404, "NoSuchKey"),
            Some(_) if !holds => error(412, "PreconditionFailed"),
            Some((body, etag)) => {
                let text = match method {
                    "GET" => String::from_utf8_lossy(body).into_owned(),
                    _ => String::new(),
                };
                (200, vec![("etag", format!("\"{etag}\""))], text)
            }
        },
        "PUT" if (if_none_match && exists) || !holds => error(412, "PreconditionFailed"),
        "PUT" => {
            store.writes += 1;
            store.written += body.len() as u64;
            let etag = format!("etag-{}", store.writes);
            store.objects.insert(key, (body.to_vec(), etag.clone()));
            (200, vec![("etag", format!("\"{etag}\""))], String::new())
        }
        "DELETE" if !exists && if_match.is_some() => error(404, "NoSuchKey"),
        "DELETE" if exists && !holds => error(412, "PreconditionFailed"),
        "DELETE" => {
            store.objects.remove(&key);
            (204, vec![], String::new())
        }
        _ => error(405, &format!("MethodNotAllowed: {method} {key}")),
    }
}

fn error(status: u16, code: &str) -> Answer {
    let body = format!("<Error><Code>{code}</Code><Message>{code}</Message></Error>");
    (status, vec![], body)
}

/// ListObjectsV2's answer: every key under the prefix, in one page.
fn list(store: &Store, prefix: &str) -> String {
    let keys: Vec<_> = store
        .objects
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .collect();
    let mut out = format!(
        "<ListBucketResult><Name>{BUCKET}</Name><Prefix>{prefix}</Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>",
        keys.len()
    );
    for (k, (body, etag)) in keys {
        out.push_str(&format!(
            "<Contents><Key>{k}</Key><ETag>\"{etag}\"</ETag><Size>{}</Size></Contents>",
            body.len()
        ));
    }
    out + "</ListBucketResult>"
}

/// The text of every `<tag>` element (the keys of a DeleteObjects body).
fn tags_of(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|s| s.split_once(close.as_str()).map(|(v, _)| v.to_string()))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl HttpConnector for MemS3 {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let fate = self.fate(&request);
        let (status, headers, body) = match fate {
            Fate::NoConnection => (0, vec![], String::new()),
            Fate::SlowDown => error(503, "SlowDown"),
            Fate::Through | Fate::Lost => self.serve(&request),
        };
        let latency = self.1;
        HttpConnectorFuture::new(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            match fate {
                Fate::NoConnection => Err(ConnectorError::io("connection refused".into())),
                Fate::Lost => Err(ConnectorError::io(
                    "connection reset: the answer was lost".into(),
                )),
                Fate::Through | Fate::SlowDown => {
                    let status = status.try_into().expect("a valid status");
                    let mut response = HttpResponse::new(status, SdkBody::from(body));
                    for (name, value) in headers {
                        response.headers_mut().insert(name, value);
                    }
                    Ok(response)
                }
            }
        })
    }
}

impl HttpClient for MemS3 {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// An HTTP client that sends nothing: the model's providers never reach
/// HTTP, and building clients over it loads no TLS roots.
pub fn no_network() -> aws_sdk_s3::config::SharedHttpClient {
    aws_smithy_runtime_api::client::http::http_client_fn(|_, _| {
        SharedHttpConnector::new(Unreachable)
    })
}

#[derive(Debug)]
struct Unreachable;

impl HttpConnector for Unreachable {
    fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Err(
            aws_smithy_runtime_api::client::result::ConnectorError::user(
                "the simulation's providers make no HTTP call".into(),
            ),
        ))
    }
}

//! Test support: a local AWS-compatible endpoint.
//!
//! `LocalAws::start()` runs moto in server mode (installed from PyPI into the
//! project's `.venv` on first use) on a free loopback port, and puts a proxy of
//! our own in front of it. The proxy records every call (service from the SigV4
//! credential scope, operation from X-Amz-Target, the Action parameter or the
//! REST path) so tests can assert which calls a command made, and it is where
//! faults are injected and where the few operations moto lacks are bridged.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub const MOTO_VERSION: &str = "5.2.5";
pub const REGION: &str = "us-east-2";

/// One AWS call as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub status: u16,
}

impl Call {
    /// Whether the call can change something in AWS.
    pub fn is_mutating(&self) -> bool {
        const READ_ONLY: &[&str] = &["Get", "List", "Describe", "Head", "Lookup"];
        !READ_ONLY.iter().any(|p| self.operation.starts_with(p))
    }
}

/// A canned answer the proxy gives instead of forwarding, for fault injection.
#[derive(Debug, Clone)]
pub struct Fault {
    pub service: String,
    pub operation: String,
    /// How many matching calls get the fault before calls pass again.
    pub times: usize,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<Call>>,
    faults: Mutex<VecDeque<Fault>>,
    log: Mutex<Option<std::fs::File>>,
    bridge: bridge::Bridge,
}

mod bridge;
pub mod runtime_api;

pub struct LocalAws {
    /// The proxy's URL: what AWS_ENDPOINT_URL should be.
    pub endpoint: String,
    /// moto's own URL, for tests that must bypass the recording.
    pub moto_endpoint: String,
    shared: Arc<Shared>,
    moto: Child,
    _runtime: tokio::runtime::Runtime,
}

impl LocalAws {
    pub fn start() -> io::Result<LocalAws> {
        let moto_server = ensure_moto()?;
        let port = free_port()?;
        let moto = Command::new(&moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let moto_addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut guard = KillOnDrop(Some(moto));
        wait_for_port(moto_addr, Duration::from_secs(60))?;
        let moto = guard
            .0
            .take()
            .ok_or_else(|| io::Error::other("moto vanished"))?;

        let shared = Arc::new(Shared::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let proxy_addr = listener.local_addr()?;
        let upstream = format!("http://{moto_addr}");
        let state = shared.clone();
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (client, upstream, state) = (client.clone(), upstream.clone(), state.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        proxy(req, client.clone(), upstream.clone(), state.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(LocalAws {
            endpoint: format!("http://{proxy_addr}"),
            moto_endpoint: format!("http://{moto_addr}"),
            shared,
            moto,
            _runtime: runtime,
        })
    }

    /// Appends every call, as a JSON line, to `path` as it happens.
    pub fn log_calls_to(&self, path: &Path) -> io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        *self.shared.log.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        Ok(())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The calls recorded so far, clearing the record.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.shared.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn inject(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(fault);
    }

    /// Environment that points an AWS SDK at this endpoint with dummy credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_SESSION_TOKEN", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }
}

impl Drop for LocalAws {
    fn drop(&mut self) {
        let _ = self.moto.kill();
        let _ = self.moto.wait();
    }
}

struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(addr: SocketAddr, limit: Duration) -> io::Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("moto did not listen on {addr} within {limit:?}"),
    ))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// The moto_server of the project's virtual environment, installed on first use.
/// Concurrent test binaries serialise on a lock file so only one installs.
pub fn ensure_moto() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("LOCALAWS_MOTO_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let venv = repo_root().join(".venv");
    let server = venv.join("bin/moto_server");
    let marker = venv.join(format!(".moto-{MOTO_VERSION}"));
    if marker.exists() {
        return Ok(server);
    }
    let lock_path = repo_root().join(".venv.lock");
    let start = Instant::now();
    let _lock = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock_path)
        {
            Ok(f) => break LockFile(lock_path.clone(), f),
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    && start.elapsed() < Duration::from_secs(600) =>
            {
                if marker.exists() {
                    return Ok(server);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    };
    if marker.exists() {
        return Ok(server);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("moto[server]=={MOTO_VERSION}")))?;
    std::fs::write(&marker, MOTO_VERSION)?;
    Ok(server)
}

struct LockFile(PathBuf, #[allow(dead_code)] std::fs::File);

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let status = cmd.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{cmd:?} failed: {status}")))
    }
}

/// Service and operation of a signed AWS request.
pub fn classify(
    method: &str,
    path: &str,
    query: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> (String, String) {
    let service = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').nth(3))
        .unwrap_or("unknown")
        .to_string();
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return (
            service,
            target.rsplit('.').next().unwrap_or(target).to_string(),
        );
    }
    if let Some(op) = path
        .strip_prefix("/service/")
        .and_then(|p| p.split("/operation/").nth(1))
    {
        return (service, op.to_string());
    }
    let form = form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(body));
    for (k, v) in form {
        if k == "Action" {
            return (service, v.into_owned());
        }
    }
    (service, rest_operation(method, path))
}

/// Lambda's REST routes, named as the API reference names them.
fn rest_operation(method: &str, path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let op = match (method, segs.as_slice()) {
        ("POST", [_, "functions"]) => "CreateFunction",
        ("GET", [_, "functions"]) => "ListFunctions",
        ("GET", [_, "functions", _]) => "GetFunction",
        ("DELETE", [_, "functions", _]) => "DeleteFunction",
        ("GET", [_, "functions", _, "configuration"]) => "GetFunctionConfiguration",
        ("PUT", [_, "functions", _, "configuration"]) => "UpdateFunctionConfiguration",
        ("PUT", [_, "functions", _, "code"]) => "UpdateFunctionCode",
        ("POST", [_, "functions", _, "invocations"]) => "Invoke",
        ("POST", [_, "functions", _, "policy"]) => "AddPermission",
        ("GET", [_, "functions", _, "policy"]) => "GetPolicy",
        ("DELETE", [_, "functions", _, "policy", _]) => "RemovePermission",
        ("GET", [_, "tags", ..]) => "ListTags",
        ("POST", [_, "tags", ..]) => "TagResource",
        ("DELETE", [_, "tags", ..]) => "UntagResource",
        _ => return format!("{method} {path}"),
    };
    op.to_string()
}

fn take_fault(shared: &Shared, service: &str, operation: &str) -> Option<Fault> {
    let mut faults = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
    let pos = faults
        .iter()
        .position(|f| f.service == service && f.operation == operation)?;
    let fault = faults[pos].clone();
    if faults[pos].times <= 1 {
        faults.remove(pos);
    } else {
        faults[pos].times -= 1;
    }
    Some(fault)
}

async fn proxy(
    req: Request<Incoming>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: String,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let (service, operation) =
        classify(parts.method.as_str(), &path, &query, &parts.headers, &body);

    let response = if let Some(fault) = take_fault(&shared, &service, &operation) {
        let mut b = Response::builder().status(fault.status);
        for (k, v) in &fault.headers {
            b = b.header(k, v);
        }
        b.body(Full::new(Bytes::from(fault.body)))
            .unwrap_or_default()
    } else if let Some(answer) = shared.bridge.serve(&service, &operation, &body) {
        answer
    } else {
        let moto = Moto {
            client: &client,
            upstream: &upstream,
            headers: &parts.headers,
        };
        let follow_up = bridge::before_forwarding(&moto, &service, &operation, &body).await;
        let response = match moto
            .send(
                parts.method.clone(),
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/"),
                None,
                body,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => error_response(502, &format!("proxy could not reach moto: {e}")),
        };
        if response.status().is_success() {
            for (target, request) in follow_up {
                let _ = moto.json(&target, &request).await;
            }
        }
        response
    };
    let call = Call {
        service,
        operation,
        status: response.status().as_u16(),
    };
    if let Some(log) = shared
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
    {
        let _ = writeln!(log, "{}", serde_json::to_string(&call).unwrap_or_default());
    }
    shared
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(call);
    Ok(response)
}

/// Requests the proxy itself sends to moto, signed as the request it serves.
pub(crate) struct Moto<'a> {
    client: &'a Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: &'a str,
    headers: &'a hyper::HeaderMap,
}

impl Moto<'_> {
    async fn send(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        target: Option<&str>,
        body: Bytes,
    ) -> Result<Response<Full<Bytes>>, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.upstream));
        for (k, v) in self.headers {
            if target.is_some() && (k == "x-amz-target" || k == "content-length") {
                continue;
            }
            req = req.header(k, v);
        }
        if let Some(t) = target {
            req = req.header("x-amz-target", t);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (p, b) = resp.into_parts();
        let bytes = b.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Response::from_parts(p, Full::new(bytes)))
    }

    /// A JSON-protocol call to moto; the answer's body when it succeeded.
    pub(crate) async fn json(
        &self,
        target: &str,
        input: &serde_json::Value,
    ) -> Option<serde_json::Value> {
        let resp = self
            .send(
                hyper::Method::POST,
                "/",
                Some(target),
                Bytes::from(input.to_string()),
            )
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
    }
}

fn error_response(status: u16, message: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(message.to_string())))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-2/sqs/aws4_request, SignedHeaders=host, Signature=x";

    #[test]
    fn classifies_json_query_and_rest_calls() {
        let h = headers(&[
            ("authorization", AUTH),
            ("x-amz-target", "AmazonSQS.CreateQueue"),
        ]);
        assert_eq!(
            classify("POST", "/", "", &h, b"{}"),
            ("sqs".into(), "CreateQueue".into())
        );
        let h = headers(&[("authorization", &AUTH.replace("/sqs/", "/sns/"))]);
        assert_eq!(
            classify("POST", "/", "", &h, b"Action=Publish&Version=2010-03-31"),
            ("sns".into(), "Publish".into())
        );
        let h = headers(&[("authorization", &AUTH.replace("/sqs/", "/lambda/"))]);
        assert_eq!(
            classify("DELETE", "/2015-03-31/functions/f/policy/sid", "", &h, b""),
            ("lambda".into(), "RemovePermission".into())
        );
        let h = headers(&[("authorization", &AUTH.replace("/sqs/", "/monitoring/"))]);
        assert_eq!(
            classify(
                "POST",
                "/service/GraniteServiceVersion20100801/operation/PutMetricAlarm",
                "",
                &h,
                b""
            ),
            ("monitoring".into(), "PutMetricAlarm".into())
        );
    }

    #[test]
    fn read_only_operations_are_not_mutating() {
        let call = |op: &str| Call {
            service: "sqs".into(),
            operation: op.into(),
            status: 200,
        };
        assert!(!call("GetQueueAttributes").is_mutating());
        assert!(!call("ListQueueTags").is_mutating());
        assert!(call("SetQueueAttributes").is_mutating());
        assert!(call("CreateQueue").is_mutating());
    }
}

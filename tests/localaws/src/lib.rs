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
use std::net::{SocketAddr, TcpStream};
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

/// A fault the proxy injects into matching calls.
#[derive(Debug, Clone)]
pub struct Fault {
    pub service: String,
    pub operation: String,
    /// How many matching calls get the fault before calls pass again.
    pub times: usize,
    pub kind: FaultKind,
    /// Armed only once a call of this operation has gone through: a fault in
    /// the follow-up of a create, not in a lookup before it.
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub enum FaultKind {
    /// A canned answer instead of AWS's: the call never reaches AWS.
    Refuse {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// The call reaches AWS, which acts on it, and then its answer is lost:
    /// the client gets this 5xx status instead.
    LoseAnswer { status: u16 },
    /// The call reaches AWS, which acts on it, and then the connection drops
    /// without an answer.
    DropConnection,
    /// The call waits this long before it is forwarded (a slow or hung AWS).
    Delay(Duration),
    /// The call reaches AWS, which acts on it and answers success, but the
    /// answer arrives without its content (the service's empty answer).
    EmptyAnswer,
    /// The call reaches AWS, which acts on it; the connection drops without
    /// an answer, and for this long no connection can be made (the network
    /// or the endpoint down): retries meet "connection refused".
    LoseAnswerThenOutage(Duration),
}

impl Fault {
    fn new(service: &str, operation: &str, times: usize, kind: FaultKind) -> Fault {
        Fault {
            service: service.into(),
            operation: operation.into(),
            times,
            kind,
            after: None,
        }
    }

    /// The call waits `delay` before AWS sees it.
    pub fn delay(service: &str, operation: &str, delay: Duration) -> Fault {
        Fault::new(service, operation, 1, FaultKind::Delay(delay))
    }

    /// Only once a call of `operation` has gone through.
    pub fn after(mut self, operation: &str) -> Fault {
        self.after = Some(operation.into());
        self
    }

    /// AWS refuses the call with this error code, in the service's protocol.
    pub fn coded(service: &str, operation: &str, status: u16, code: &str, message: &str) -> Fault {
        let (status, headers, body) = protocol::error(service, status, code, message);
        Fault::new(
            service,
            operation,
            1,
            FaultKind::Refuse {
                status,
                headers,
                body,
            },
        )
    }

    /// The service's own throttling error, `times` times.
    pub fn throttle(service: &str, operation: &str, times: usize) -> Fault {
        let (status, headers, body) = protocol::throttling(service);
        Fault::new(
            service,
            operation,
            times,
            FaultKind::Refuse {
                status,
                headers,
                body,
            },
        )
    }

    /// AWS acts on the call and its answer is lost (a 500 instead).
    pub fn lose_answer(service: &str, operation: &str) -> Fault {
        Fault::new(service, operation, 1, FaultKind::LoseAnswer { status: 500 })
    }

    /// AWS acts on the call and answers success without its content.
    pub fn empty_answer(service: &str, operation: &str) -> Fault {
        Fault::new(service, operation, 1, FaultKind::EmptyAnswer)
    }

    /// AWS acts on the call and the connection drops before the answer.
    pub fn drop_connection(service: &str, operation: &str) -> Fault {
        Fault::new(service, operation, 1, FaultKind::DropConnection)
    }

    /// AWS acts on the call, its answer is lost, and then no connection can
    /// be made for `outage`.
    pub fn lose_answer_then_outage(service: &str, operation: &str, outage: Duration) -> Fault {
        Fault::new(
            service,
            operation,
            1,
            FaultKind::LoseAnswerThenOutage(outage),
        )
    }

    pub fn times(mut self, n: usize) -> Fault {
        self.times = n;
        self
    }
}

/// Random faults on a share of all calls, from a seeded generator so a
/// failing run can be repeated.
#[derive(Debug, Clone, Copy)]
pub struct Chaos {
    /// Share of calls that fail: half throttled, a quarter refused with a
    /// 5xx, a quarter acted on by AWS with the answer lost.
    pub rate: f64,
    pub seed: u64,
}

/// Kills a process (SIGKILL) once AWS has acted on the k-th mutating call
/// after the trap is set, and loses that call's answer: a crash at the worst
/// moment.
#[derive(Debug, Default)]
struct KillTrap {
    after: usize,
    seen: usize,
    pid: Option<u32>,
    fired: bool,
    /// SIGSTOP instead of SIGKILL: the process stalls (a laptop asleep) and
    /// gets the call's answer when it is continued.
    stall: bool,
}

pub mod protocol;

type Hook = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<Call>>,
    faults: Mutex<VecDeque<Fault>>,
    chaos: Mutex<Option<(Chaos, u64)>>,
    kill: Mutex<Option<KillTrap>>,
    hooks: Mutex<Vec<(String, Hook)>>,
    /// Operations that have gone through, for faults armed after one.
    seen: Mutex<std::collections::HashSet<String>>,
    log: Mutex<Option<std::fs::File>>,
    bridge: bridge::Bridge,
    /// S3 decides a conditional write (If-Match, If-None-Match) atomically;
    /// moto checks, then writes, so two racing writers could both win. The
    /// proxy lets one conditional S3 write through at a time.
    conditional_writes: tokio::sync::Mutex<()>,
    /// Added to every call, as the round trip to a real AWS region would be.
    latency: Mutex<Duration>,
    /// Until when no connection can be made (the listener is closed).
    outage_until: Mutex<Option<Instant>>,
    /// Tells the accept loop an outage began.
    outage: tokio::sync::Notify,
    /// While a stall is being placed, answers wait (see `stall`).
    holding: std::sync::atomic::AtomicBool,
    released: tokio::sync::Notify,
    /// When the last request arrived.
    last_request: Mutex<Option<Instant>>,
    /// The identity whose calls the proxy authorizes (authz.rs).
    restricted: Mutex<Option<Arc<authz::Restricted>>>,
}

impl Shared {
    fn in_outage(&self) -> bool {
        lock(&self.outage_until).is_some_and(|until| Instant::now() < until)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub mod authz;
mod bridge;
mod cbor;

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
        // Port 0: the OS gives moto a free port as it binds (a port found
        // free and then handed over could be taken by another test between).
        let mut moto = Command::new(&moto_server)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = moto.stderr.take();
        let mut guard = KillOnDrop(Some(moto));
        let port = moto_port(stderr)?;
        let moto_addr: SocketAddr = ([127, 0, 0, 1], port).into();
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
            let Ok(mut listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => Some(accepted),
                    () = state.outage.notified() => None,
                };
                let Some(accepted) = accepted else {
                    // An outage: no listener, so connections are refused, until
                    // it ends; the port stays held so nothing else takes it.
                    drop(listener);
                    let held = hold_port(proxy_addr);
                    let until = *lock(&state.outage_until);
                    if let Some(until) = until {
                        tokio::time::sleep_until(until.into()).await;
                    }
                    drop(held);
                    listener = loop {
                        match tokio::net::TcpListener::bind(proxy_addr).await {
                            Ok(l) => break l,
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    };
                    continue;
                };
                let Ok((stream, _)) = accepted else {
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
        lock(&self.shared.faults).push_back(fault);
    }

    /// Waits until no outage is under way (the endpoint takes connections).
    pub fn wait_for_outage_to_end(&self) {
        while self.shared.in_outage() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let addr = self.endpoint.trim_start_matches("http://");
        let addr: SocketAddr = addr.parse().expect("the proxy's address");
        let _ = wait_for_port(addr, Duration::from_secs(10));
    }

    /// Delays every call by `d` before it is served (the bench's 50 ms).
    pub fn latency(&self, d: Duration) {
        *lock(&self.shared.latency) = d;
    }

    /// Faults on a share of every call from now on; `None` stops them.
    pub fn chaos(&self, chaos: Option<Chaos>) {
        *lock(&self.shared.chaos) = chaos.map(|c| (c, c.seed.max(1)));
    }

    /// Arms a crash: the process given to `kill_target` is killed right after
    /// AWS acted on the k-th mutating call from now (k counts from 1).
    pub fn kill_after_mutating(&self, k: usize) {
        *lock(&self.shared.kill) = Some(KillTrap {
            after: k,
            ..KillTrap::default()
        });
    }

    /// Arms a stall: the process given to `kill_target` is stopped
    /// (SIGSTOP) right after AWS acted on the k-th mutating call from now;
    /// the answer waits for it in its socket.
    pub fn stop_after_mutating(&self, k: usize) {
        *lock(&self.shared.kill) = Some(KillTrap {
            after: k,
            stall: true,
            ..KillTrap::default()
        });
    }

    pub fn kill_target(&self, pid: u32) {
        if let Some(trap) = lock(&self.shared.kill).as_mut() {
            trap.pid = Some(pid);
        }
    }

    /// Whether the armed crash happened.
    pub fn killed(&self) -> bool {
        lock(&self.shared.kill).as_ref().is_some_and(|t| t.fired)
    }

    /// Runs `hook` as each call of `operation` arrives, before AWS sees it.
    pub fn on_call(&self, operation: &str, hook: impl Fn() + Send + Sync + 'static) {
        lock(&self.shared.hooks).push((operation.to_string(), Box::new(hook)));
    }

    /// From now on the calls signed with `access_key` are authorized against
    /// `policy` as IAM would, and refused with AccessDenied where it does
    /// not allow them (authz.rs); other credentials stay unrestricted.
    pub fn restrict(&self, access_key: &str, policy: serde_json::Value) {
        *lock(&self.shared.restricted) = Some(Arc::new(authz::Restricted {
            access_key: access_key.to_string(),
            policy,
        }));
    }

    /// Every identity unrestricted again.
    pub fn unrestrict(&self) {
        *lock(&self.shared.restricted) = None;
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

/// The port moto says it runs on (` * Running on http://127.0.0.1:PORT`);
/// the rest of what it writes (a line per request) is read and dropped.
fn moto_port(stderr: Option<std::process::ChildStderr>) -> io::Result<u16> {
    use std::io::BufRead;
    let stderr = stderr.ok_or_else(|| io::Error::other("moto's stderr"))?;
    let mut lines = io::BufReader::new(stderr).lines();
    let port = loop {
        let line = lines
            .next()
            .ok_or_else(|| io::Error::other("moto ended before it listened"))??;
        if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            break digits
                .parse()
                .map_err(|_| io::Error::other(format!("moto said: {line}")))?;
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok(port)
}

/// Holds a port without listening on it: connections are refused, and no
/// other socket asking the OS for a free port is given it.
fn hold_port(addr: SocketAddr) -> Option<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.set_reuse_address(true).ok()?;
    socket.bind(&addr.into()).ok()?;
    Some(socket)
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
    if service == "s3" {
        return (service, s3_operation(method, path, query, headers));
    }
    (service, rest_operation(method, path))
}

/// S3's REST routes (path-style), named as the API reference names them.
fn s3_operation(method: &str, path: &str, query: &str, headers: &hyper::HeaderMap) -> String {
    let object = path.trim_matches('/').contains('/');
    let op = match (method, object) {
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("PUT", true) if headers.contains_key("x-amz-copy-source") => "CopyObject",
        ("PUT", true) => "PutObject",
        ("DELETE", true) => "DeleteObject",
        ("GET", false) if query.contains("versioning") => "GetBucketVersioning",
        ("PUT", false) if query.contains("versioning") => "PutBucketVersioning",
        ("POST", false) if query.contains("delete") => "DeleteObjects",
        ("GET", false) if query.contains("versions") => "ListObjectVersions",
        ("GET", false) if query.contains("list-type=2") => "ListObjectsV2",
        ("GET", false) => "ListObjects",
        ("PUT", false) => "CreateBucket",
        ("DELETE", false) => "DeleteBucket",
        ("HEAD", false) => "HeadBucket",
        _ => return format!("{method} {path}"),
    };
    op.to_string()
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
        ("GET", [_, "functions", _, "concurrency"]) => "GetFunctionConcurrency",
        ("PUT", [_, "functions", _, "concurrency"]) => "PutFunctionConcurrency",
        ("DELETE", [_, "functions", _, "concurrency"]) => "DeleteFunctionConcurrency",
        ("GET", [_, "tags", ..]) => "ListTags",
        ("POST", [_, "tags", ..]) => "TagResource",
        ("DELETE", [_, "tags", ..]) => "UntagResource",
        _ => return format!("{method} {path}"),
    };
    op.to_string()
}

fn take_fault(shared: &Shared, service: &str, operation: &str) -> Option<FaultKind> {
    let seen = lock(&shared.seen);
    let mut faults = lock(&shared.faults);
    if let Some(pos) = faults.iter().position(|f| {
        f.service == service
            && f.operation == operation
            && f.after.as_ref().is_none_or(|a| seen.contains(a))
    }) {
        let kind = faults[pos].kind.clone();
        if faults[pos].times <= 1 {
            faults.remove(pos);
        } else {
            faults[pos].times -= 1;
        }
        return Some(kind);
    }
    drop(faults);
    drop(seen);
    let mut chaos = lock(&shared.chaos);
    let (c, state) = chaos.as_mut()?;
    // xorshift64: small, seeded, good enough to pick faults.
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    };
    let (hit, pick) = (next(), next());
    if hit >= c.rate {
        return None;
    }
    Some(if pick < 0.5 {
        let (status, headers, body) = protocol::throttling(service);
        FaultKind::Refuse {
            status,
            headers,
            body,
        }
    } else if pick < 0.75 {
        let (status, headers, body) =
            protocol::error(service, 503, "ServiceUnavailable", "Service is unavailable");
        FaultKind::Refuse {
            status,
            headers,
            body,
        }
    } else {
        FaultKind::LoseAnswer { status: 500 }
    })
}

/// What the armed trap does on this call, which AWS has just acted on.
enum Trap {
    None,
    /// The process was killed (SIGKILL): the call's answer is lost.
    Killed,
    /// The process is to be stopped (SIGSTOP).
    Stall(u32),
}

fn trap_on(shared: &Shared, call: &Call) -> Trap {
    if !call.is_mutating() || call.status >= 300 {
        return Trap::None;
    }
    let mut trap = lock(&shared.kill);
    let Some(t) = trap.as_mut().filter(|t| !t.fired) else {
        return Trap::None;
    };
    t.seen += 1;
    if t.seen < t.after {
        return Trap::None;
    }
    let Some(pid) = t.pid else { return Trap::None };
    t.fired = true;
    if t.stall {
        return Trap::Stall(pid);
    }
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    Trap::Killed
}

/// Stops the process where a laptop's sleep would leave a run that checks
/// its lease before each call: every answer is held, so nothing new begins;
/// what the process had already begun sending arrives (a call handed to the
/// network before a sleep is sent on waking whatever the client does); once
/// nothing has arrived for 300 ms it is stopped, and the answers go into its
/// sockets.
async fn stall(shared: &Shared, pid: u32) {
    use std::sync::atomic::Ordering;
    shared.holding.store(true, Ordering::SeqCst);
    let quiet = Duration::from_millis(300);
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let last = (*lock(&shared.last_request)).unwrap_or(started);
        if last.elapsed() >= quiet || started.elapsed() >= Duration::from_secs(5) {
            break;
        }
    }
    let _ = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status();
    shared.holding.store(false, Ordering::SeqCst);
    shared.released.notify_waiters();
}

/// Waits while a stall is being placed.
async fn held(shared: &Shared) {
    use std::sync::atomic::Ordering;
    loop {
        let released = shared.released.notified();
        if !shared.holding.load(Ordering::SeqCst) {
            return;
        }
        released.await;
    }
}

type ProxyError = Box<dyn std::error::Error + Send + Sync>;

async fn proxy(
    req: Request<Incoming>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: String,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, ProxyError> {
    // During an outage a request on a connection made before it is lost
    // too: the connection closes without an answer.
    if shared.in_outage() {
        return Err("outage".into());
    }
    *lock(&shared.last_request) = Some(Instant::now());
    let (mut parts, body) = req.into_parts();
    let mut body = body.collect().await?.to_bytes();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let started = std::time::Instant::now();
    let (service, operation) =
        classify(parts.method.as_str(), &path, &query, &parts.headers, &body);
    // moto reads CloudWatch's JSON protocol, not CBOR: the same call in that
    // form, and the answer back in CBOR below.
    let cbor = cbor::is_cbor(&parts.headers);
    if cbor {
        body = Bytes::from(cbor::request_to_json(&body)?);
        cbor::as_json_request(&mut parts, &operation);
    }
    let latency = *lock(&shared.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let request_bytes = body.len();
    for (op, hook) in lock(&shared.hooks).iter() {
        if *op == operation {
            hook();
        }
    }
    let restricted = lock(&shared.restricted).clone();
    let refusal = authz::refusal(
        restricted.as_deref(),
        &client,
        &upstream,
        &parts.headers,
        &service,
        &operation,
        &path,
        &query,
        &body,
    )
    .await;
    // AWS authorizes a call before anything else happens to it.
    let fault = match refusal {
        Some((status, headers, body)) => Some(FaultKind::Refuse {
            status,
            headers,
            body,
        }),
        None => take_fault(&shared, &service, &operation),
    };
    if let Some(FaultKind::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let response = match &fault {
        Some(FaultKind::Refuse {
            status,
            headers,
            body,
        }) => {
            let mut b = Response::builder().status(*status);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Full::new(Bytes::from(body.clone())))
                .unwrap_or_default()
        }
        _ => {
            let conditional = service == "s3"
                && (parts.headers.contains_key("if-match")
                    || parts.headers.contains_key("if-none-match"))
                && parts.method != hyper::Method::GET;
            let _one_at_a_time = match conditional {
                true => Some(shared.conditional_writes.lock().await),
                false => None,
            };
            let moto = Moto {
                client: &client,
                upstream: &upstream,
                headers: &parts.headers,
            };
            let target = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            forward(
                &moto,
                &shared.bridge,
                &parts.method,
                target,
                &service,
                &operation,
                body,
            )
            .await
        }
    };
    let mut call = Call {
        service,
        operation,
        status: response.status().as_u16(),
    };
    if response.status().is_success() {
        lock(&shared.seen).insert(call.operation.clone());
    }
    let crashed = match trap_on(&shared, &call) {
        Trap::Killed => true,
        Trap::Stall(pid) => {
            stall(&shared, pid).await;
            false
        }
        Trap::None => {
            held(&shared).await;
            false
        }
    };
    let answer = match fault {
        _ if crashed => None,
        Some(FaultKind::DropConnection) => None,
        Some(FaultKind::EmptyAnswer) if response.status().is_success() => {
            let (headers, body) = protocol::empty_answer(&call.service, &call.operation);
            let mut b = Response::builder().status(200);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            Some(b.body(Full::new(Bytes::from(body))).unwrap_or_default())
        }
        Some(FaultKind::LoseAnswerThenOutage(outage)) => {
            *lock(&shared.outage_until) = Some(Instant::now() + outage);
            shared.outage.notify_one();
            None
        }
        Some(FaultKind::LoseAnswer { status }) => {
            let (status, headers, body) =
                protocol::error(&call.service, status, "InternalFailure", "Internal failure");
            let mut b = Response::builder().status(status);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            Some(b.body(Full::new(Bytes::from(body))).unwrap_or_default())
        }
        _ => Some(response),
    };
    let answer = match answer {
        Some(a) if cbor => Some(cbor::as_cbor_response(&call.operation, a).await),
        other => other,
    };
    call.status = answer.as_ref().map_or(0, |r| r.status().as_u16());
    if let Some(log) = lock(&shared.log).as_mut() {
        // The bench reads timings and sizes from the log (S3 keys for the
        // state's journal objects).
        let line = serde_json::json!({
            "service": call.service,
            "operation": call.operation,
            "status": call.status,
            "ms": started.elapsed().as_secs_f64() * 1000.0,
            "bytes": request_bytes,
            "path": if call.service == "s3" { path.as_str() } else { "" },
        });
        let _ = writeln!(log, "{line}");
    }
    lock(&shared.calls).push(call);
    answer.ok_or_else(|| "the proxy dropped the connection (injected fault)".into())
}

/// Serves a call the way AWS would: from the bridge where moto lacks the
/// operation, else from moto with the bridge's corrections around it.
async fn forward(
    moto: &Moto<'_>,
    bridge: &bridge::Bridge,
    method: &hyper::Method,
    path_and_query: &str,
    service: &str,
    operation: &str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    if let Some(answer) = bridge.serve(service, operation, &body) {
        return answer;
    }
    if let Some(answer) = bridge.replay(service, operation, &body) {
        return answer;
    }
    let follow_up =
        match bridge::before_forwarding(moto, service, operation, path_and_query, &body).await {
            Ok(follow_up) => follow_up,
            Err(refusal) => return refusal,
        };
    let response = match moto
        .send(method.clone(), path_and_query, None, body.clone())
        .await
    {
        Ok(r) => r,
        Err(e) => return error_response(502, &format!("proxy could not reach moto: {e}")),
    };
    if response.status().is_success() && (service, operation) == ("lambda", "GetFunction") {
        return bridge::function_concurrency(moto, path_and_query, response).await;
    }
    if response.status().is_success() {
        for (target, request) in follow_up {
            let _ = moto.json(&target, &request).await;
        }
    }
    bridge.remember(service, operation, &body, response).await
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
        let rewritten = target.is_some() || method == hyper::Method::GET;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.upstream));
        for (k, v) in self.headers {
            if rewritten && (k == "x-amz-target" || k == "content-length") {
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

    /// A REST GET to moto (Lambda's routes); the JSON answer when it succeeded.
    pub(crate) async fn get(&self, path: &str) -> Option<serde_json::Value> {
        let resp = self
            .send(hyper::Method::GET, path, None, Bytes::new())
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice(&body).ok()
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

pub(crate) fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_default()
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

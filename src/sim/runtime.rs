//! A Lambda Runtime API (2018-06-01) server, so a function's real `bootstrap`
//! runs the way Lambda runs it: it long-polls `/runtime/invocation/next` and
//! posts a response or an error for each invocation.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::Notify;

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    Error { error_type: String, body: Value },
    InitError(Value),
}

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<(String, Value, u64)>>,
    queued: Notify,
    results: Mutex<HashMap<String, Outcome>>,
    init_error: Mutex<Option<Value>>,
    finished: Notify,
    function_arn: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct RuntimeApi {
    /// `host:port`, the value of AWS_LAMBDA_RUNTIME_API.
    pub address: String,
    shared: Arc<Shared>,
}

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

async fn serve(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_string();
    let error_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled")
        .to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let json = || {
        serde_json::from_slice::<Value>(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["2018-06-01", "runtime", "invocation", "next"] => loop {
            let notified = shared.queued.notified();
            if let Some((id, event, deadline)) = lock(&shared.queue).pop_front() {
                return Ok(Response::builder()
                    .status(200)
                    .header("lambda-runtime-aws-request-id", id)
                    .header("lambda-runtime-deadline-ms", deadline.to_string())
                    .header(
                        "lambda-runtime-invoked-function-arn",
                        shared.function_arn.as_str(),
                    )
                    .header(
                        "lambda-runtime-trace-id",
                        "Root=1-00000000-000000000000000000000000;Sampled=0",
                    )
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(event.to_string())))
                    .unwrap_or_default());
            }
            notified.await;
        },
        ["2018-06-01", "runtime", "invocation", id, kind @ ("response" | "error")] => {
            let outcome = if *kind == "response" {
                Outcome::Response(json())
            } else {
                Outcome::Error {
                    error_type,
                    body: json(),
                }
            };
            lock(&shared.results).insert(id.to_string(), outcome);
            shared.finished.notify_waiters();
            Ok(reply(202, r#"{"status":"OK"}"#))
        }
        ["2018-06-01", "runtime", "init", "error"] => {
            *lock(&shared.init_error) = Some(json());
            shared.finished.notify_waiters();
            Ok(reply(202, r#"{"status":"OK"}"#))
        }
        _ => Ok(reply(404, "unknown Runtime API route")),
    }
}

impl RuntimeApi {
    /// Serves on a free loopback port, on the current tokio runtime.
    pub async fn start(function_arn: &str) -> std::io::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let shared = Arc::new(Shared {
            function_arn: function_arn.to_string(),
            ..Shared::default()
        });
        let state = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| serve(req, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RuntimeApi { address, shared })
    }

    /// Hands `event` to the function with `budget` until its deadline, and
    /// waits at most `wait` for its answer.
    pub async fn invoke(
        &self,
        request_id: &str,
        event: Value,
        budget: Duration,
        wait: Duration,
    ) -> Option<Outcome> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let deadline = now + budget.as_millis() as u64;
        lock(&self.shared.queue).push_back((request_id.to_string(), event, deadline));
        self.shared.queued.notify_waiters();
        let shared = self.shared.clone();
        let id = request_id.to_string();
        tokio::time::timeout(wait, async move {
            loop {
                let finished = shared.finished.notified();
                if let Some(o) = lock(&shared.results).remove(&id) {
                    return o;
                }
                if let Some(e) = lock(&shared.init_error).clone() {
                    return Outcome::InitError(e);
                }
                // The function may not be polling yet: wake it again.
                shared.queued.notify_waiters();
                let _ = tokio::time::timeout(Duration::from_millis(200), finished).await;
            }
        })
        .await
        .ok()
    }
}

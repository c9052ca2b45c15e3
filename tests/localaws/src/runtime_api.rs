//! A Lambda Runtime API (2018-06-01) server, so a real `bootstrap` can be run
//! the way Lambda runs it: it long-polls `/runtime/invocation/next` and posts a
//! response or an error for each invocation.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
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
struct State {
    queue: Mutex<VecDeque<(String, Value, u64)>>,
    queued: Notify,
    results: Mutex<HashMap<String, Outcome>>,
    init_error: Mutex<Option<Value>>,
    finished: Notify,
}

pub struct RuntimeApi {
    /// `host:port`, the value of AWS_LAMBDA_RUNTIME_API.
    pub address: String,
    state: Arc<State>,
    runtime: tokio::runtime::Runtime,
}

pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-2:123456789012:function:lambda_function01";

fn reply(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

async fn serve(
    req: Request<Incoming>,
    state: Arc<State>,
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
            let notified = state.queued.notified();
            if let Some((id, event, deadline)) = state
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
            {
                return Ok(Response::builder()
                    .status(200)
                    .header("lambda-runtime-aws-request-id", id)
                    .header("lambda-runtime-deadline-ms", deadline.to_string())
                    .header("lambda-runtime-invoked-function-arn", FUNCTION_ARN)
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
            state
                .results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_string(), outcome);
            state.finished.notify_waiters();
            Ok(reply(202, r#"{"status":"OK"}"#))
        }
        ["2018-06-01", "runtime", "init", "error"] => {
            *state.init_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(json());
            state.finished.notify_waiters();
            Ok(reply(202, r#"{"status":"OK"}"#))
        }
        _ => Ok(reply(404, "unknown Runtime API route")),
    }
}

impl RuntimeApi {
    pub fn start() -> std::io::Result<RuntimeApi> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let shared = state.clone();
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| serve(req, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RuntimeApi {
            address: addr.to_string(),
            state,
            runtime,
        })
    }

    /// Hands `event` to the function and waits for its answer.
    pub fn invoke(
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
        self.state
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((request_id.to_string(), event, deadline));
        self.state.queued.notify_waiters();
        let state = self.state.clone();
        let id = request_id.to_string();
        self.runtime.block_on(async move {
            tokio::time::timeout(wait, async {
                loop {
                    let finished = state.finished.notified();
                    if let Some(o) = state
                        .results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id)
                    {
                        return o;
                    }
                    if let Some(e) = state
                        .init_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                    {
                        return Outcome::InitError(e);
                    }
                    // The poller may not be waiting yet: wake it again.
                    state.queued.notify_waiters();
                    let _ = tokio::time::timeout(Duration::from_millis(200), finished).await;
                }
            })
            .await
            .ok()
        })
    }
}

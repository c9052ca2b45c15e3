//! Operations moto 5.2.5 lacks, served by the proxy itself, faithfully to the
//! AWS API reference (shapes, validation and error codes).
//!
//! - CloudWatch Logs query definitions: PutQueryDefinition,
//!   DescribeQueryDefinitions, DeleteQueryDefinition (moto answers HTTP 500).
//! - PutMetricFilter with the name of an existing filter replaces it on AWS;
//!   moto adds a second filter of the same name. The proxy deletes the old one
//!   first.
//! - SetQueueAttributes changes only the attributes it names on AWS; moto also
//!   clears the queue's Policy when it is not among them. The proxy puts the
//!   policy back.
//! - Idempotency tokens: AWS answers a repeated RunInstances with the same
//!   ClientToken with the original reservation, and a repeated
//!   PutQueryDefinition with the same clientToken with the original id,
//!   creating nothing; moto ignores RunInstances' token. The proxy remembers
//!   each token's answer.
//! - AddPermission with a statement id the function's policy already has is a
//!   ResourceConflictException on AWS; moto adds a second statement.
//! - GetFunction's answer has `Concurrency` whenever the function has a
//!   reserved concurrency, 0 included; moto leaves it out for 0.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::{json, Value};

/// Calls to make before forwarding a request so moto behaves as AWS does, and
/// the calls to make after it succeeded; or AWS's refusal of the request.
pub(crate) async fn before_forwarding(
    moto: &crate::Moto<'_>,
    service: &str,
    operation: &str,
    path: &str,
    body: &[u8],
) -> Result<Vec<(String, Value)>, Response<Full<Bytes>>> {
    let input: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (service, operation) {
        ("logs", "PutMetricFilter") => {
            let delete =
                json!({"logGroupName": input["logGroupName"], "filterName": input["filterName"]});
            let _ = moto.json("Logs_20140328.DeleteMetricFilter", &delete).await;
            Ok(Vec::new())
        }
        ("sqs", "SetQueueAttributes") if input["Attributes"].get("Policy").is_none() => {
            let get = json!({"QueueUrl": input["QueueUrl"], "AttributeNames": ["Policy"]});
            let policy = moto
                .json("AmazonSQS.GetQueueAttributes", &get)
                .await
                .and_then(|v| v["Attributes"]["Policy"].as_str().map(str::to_string));
            Ok(match policy.filter(|p| !p.is_empty()) {
                Some(p) => vec![(
                    "AmazonSQS.SetQueueAttributes".into(),
                    json!({"QueueUrl": input["QueueUrl"], "Attributes": {"Policy": p}}),
                )],
                None => Vec::new(),
            })
        }
        ("lambda", "AddPermission") => {
            let sid = input["StatementId"].as_str().unwrap_or_default();
            let policy = moto
                .get(path.split('?').next().unwrap_or(path))
                .await
                .and_then(|v| v["Policy"].as_str().map(crate::parse_json));
            let taken = policy.is_some_and(|p| {
                p["Statement"]
                    .as_array()
                    .is_some_and(|st| st.iter().any(|s| s["Sid"] == sid))
            });
            if taken {
                let (status, headers, body) = crate::protocol::error(
                    "lambda",
                    409,
                    "ResourceConflictException",
                    &format!("The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."),
                );
                let mut b = Response::builder().status(status);
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                return Err(b.body(Full::new(Bytes::from(body))).unwrap_or_default());
            }
            Ok(Vec::new())
        }
        _ => Ok(Vec::new()),
    }
}

/// The ClientToken of an EC2 RunInstances call (Query protocol form).
fn run_instances_token(service: &str, operation: &str, body: &[u8]) -> Option<String> {
    if (service, operation) != ("ec2", "RunInstances") {
        return None;
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "ClientToken")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
}

#[derive(Default)]
pub struct Bridge {
    query_definitions: Mutex<Vec<Value>>,
    next_id: Mutex<u64>,
    /// Idempotency token → the answer AWS gave the first call with it.
    answers: Mutex<std::collections::HashMap<String, (u16, Bytes)>>,
}

fn logs_response(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "00000000-0000-4000-8000-000000000000")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

fn logs_error(code: &str, message: &str) -> Response<Full<Bytes>> {
    logs_response(400, json!({"__type": code, "message": message}))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Bridge {
    /// The answer to a call repeating an idempotency token already used.
    pub fn replay(
        &self,
        service: &str,
        operation: &str,
        body: &[u8],
    ) -> Option<Response<Full<Bytes>>> {
        let token = run_instances_token(service, operation, body)?;
        let answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        let (status, body) = answers.get(&token)?.clone();
        Response::builder()
            .status(status)
            .header("content-type", "text/xml")
            .body(Full::new(body))
            .ok()
    }

    /// Keeps a successful answer to a call with an idempotency token.
    pub async fn remember(
        &self,
        service: &str,
        operation: &str,
        body: &[u8],
        response: Response<Full<Bytes>>,
    ) -> Response<Full<Bytes>> {
        if service == "s3" && operation == "GetBucketVersioning" {
            return versioning_configuration(response).await;
        }
        let Some(token) = run_instances_token(service, operation, body) else {
            return response;
        };
        if !response.status().is_success() {
            return response;
        }
        let (parts, b) = response.into_parts();
        let bytes = http_body_util::BodyExt::collect(b)
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, (parts.status.as_u16(), bytes.clone()));
        Response::from_parts(parts, Full::new(bytes))
    }

    pub fn serve(
        &self,
        service: &str,
        operation: &str,
        body: &[u8],
    ) -> Option<Response<Full<Bytes>>> {
        if service != "logs" {
            return None;
        }
        let input: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match operation {
            "PutQueryDefinition" => Some(self.put(&input)),
            "DescribeQueryDefinitions" => Some(self.describe(&input)),
            "DeleteQueryDefinition" => Some(self.delete(&input)),
            _ => None,
        }
    }

    fn put(&self, input: &Value) -> Response<Full<Bytes>> {
        let name = input["name"].as_str().unwrap_or_default();
        let query = input["queryString"].as_str().unwrap_or_default();
        if name.is_empty() || name.chars().count() > 255 {
            return logs_error(
                "InvalidParameterException",
                "name must be 1 to 255 characters",
            );
        }
        if query.is_empty() || query.chars().count() > 10_000 {
            return logs_error(
                "InvalidParameterException",
                "queryString must be 1 to 10000 characters",
            );
        }
        let groups = input
            .get("logGroupNames")
            .cloned()
            .unwrap_or_else(|| json!([]));
        let mut defs = self
            .query_definitions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let id = match input["queryDefinitionId"].as_str() {
            Some(id) => {
                let Some(def) = defs.iter_mut().find(|d| d["queryDefinitionId"] == id) else {
                    return logs_error(
                        "ResourceNotFoundException",
                        "The specified query definition does not exist.",
                    );
                };
                def["name"] = json!(name);
                def["queryString"] = json!(query);
                def["logGroupNames"] = groups;
                def["lastModified"] = json!(now_ms());
                id.to_string()
            }
            None => {
                let token = input["clientToken"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, id)) = answers.get(&token).filter(|_| !token.is_empty()) {
                    return logs_response(
                        200,
                        json!({"queryDefinitionId": String::from_utf8_lossy(id)}),
                    );
                }
                let mut n = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
                *n += 1;
                let id = format!("{:08x}-0000-4000-8000-{:012x}", now_ms() & 0xffff_ffff, *n);
                defs.push(json!({
                    "queryDefinitionId": id, "name": name, "queryString": query,
                    "logGroupNames": groups, "lastModified": now_ms(), "queryLanguage": "CWLI"
                }));
                if !token.is_empty() {
                    answers.insert(token, (200, Bytes::from(id.clone())));
                }
                id
            }
        };
        logs_response(200, json!({"queryDefinitionId": id}))
    }

    fn describe(&self, input: &Value) -> Response<Full<Bytes>> {
        let prefix = input["queryDefinitionNamePrefix"]
            .as_str()
            .unwrap_or_default();
        let max = input["maxResults"].as_u64().unwrap_or(1000);
        if !(1..=1000).contains(&max) {
            return logs_error(
                "InvalidParameterException",
                "maxResults must be between 1 and 1000",
            );
        }
        let start: usize = input["nextToken"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let defs = self
            .query_definitions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let matching: Vec<&Value> = defs
            .iter()
            .filter(|d| d["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .collect();
        let page: Vec<Value> = matching
            .iter()
            .skip(start)
            .take(max as usize)
            .map(|d| (*d).clone())
            .collect();
        let mut out = json!({"queryDefinitions": page});
        if start + (max as usize) < matching.len() {
            out["nextToken"] = json!((start + max as usize).to_string());
        }
        logs_response(200, out)
    }

    fn delete(&self, input: &Value) -> Response<Full<Bytes>> {
        let id = input["queryDefinitionId"].as_str().unwrap_or_default();
        let mut defs = self
            .query_definitions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let before = defs.len();
        defs.retain(|d| d["queryDefinitionId"] != id);
        if defs.len() == before {
            return logs_error(
                "ResourceNotFoundException",
                "The specified query definition does not exist.",
            );
        }
        logs_response(200, json!({"success": true}))
    }
}

/// moto leaves `Concurrency` out of GetFunction's answer when the reserved
/// concurrency is 0 (it tests the number's truth); AWS includes it (API
/// reference, GetFunction: Concurrency). The proxy asks moto's
/// GetFunctionConcurrency and puts the answer in.
pub(crate) async fn function_concurrency(
    moto: &crate::Moto<'_>,
    path: &str,
    response: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let (mut parts, b) = response.into_parts();
    let bytes = http_body_util::BodyExt::collect(b)
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Full::new(bytes));
    };
    if answer.get("Concurrency").is_none() {
        let name = path.split('?').next().unwrap_or(path).rsplit('/').next();
        let route = format!(
            "/2019-09-30/functions/{}/concurrency",
            name.unwrap_or_default()
        );
        let reserved = moto.get(&route).await;
        if let Some(n) = reserved.and_then(|v| v["ReservedConcurrentExecutions"].as_i64()) {
            answer["Concurrency"] = json!({"ReservedConcurrentExecutions": n});
        }
    }
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    Response::from_parts(parts, Full::new(Bytes::from(answer.to_string())))
}

/// moto answers GetBucketVersioning with a `GetBucketVersioningResponse`
/// root element; S3 (and so the SDK's parser) uses `VersioningConfiguration`
/// (API reference, GetBucketVersioning: Response Syntax).
async fn versioning_configuration(response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let (mut parts, b) = response.into_parts();
    let bytes = http_body_util::BodyExt::collect(b)
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes)
        .replace("GetBucketVersioningResponse", "VersioningConfiguration");
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    Response::from_parts(parts, Full::new(Bytes::from(text)))
}

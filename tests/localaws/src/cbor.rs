//! CloudWatch over Smithy RPC v2 CBOR, which the current aws-sdk-cloudwatch
//! speaks and moto 5.2.5 does not: the proxy translates each CBOR request to
//! the awsJson 1.0 protocol moto reads, and moto's JSON answer back to CBOR,
//! shaped by the service's own model (botocore's, in the project's .venv).
//!
//! Smithy RPC v2 CBOR (see `../shared/spec/wire-protocols.md` §3.5):
//! `POST /service/GraniteServiceVersion20100801/operation/<Op>` with
//! `smithy-protocol: rpc-v2-cbor` and a CBOR map of the input; the answer
//! carries the same header, `Content-Type: application/cbor` and a CBOR map
//! (empty output: an empty map); timestamps are tag 1 over epoch seconds,
//! blobs byte strings, doubles floats; an error is a map with `__type` and
//! `message` beside the `x-amzn-query-error` header JSON has.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use base64::Engine as _;
use ciborium::Value as Cbor;
use serde_json::Value as Json;

/// The JSON protocol's target prefix of CloudWatch.
pub const TARGET_PREFIX: &str = "GraniteServiceVersion20100801";

/// Whether a request speaks RPC v2 CBOR.
pub fn is_cbor(headers: &hyper::HeaderMap) -> bool {
    headers
        .get("smithy-protocol")
        .is_some_and(|v| v.as_bytes() == b"rpc-v2-cbor")
}

/// A CBOR request body as the JSON protocol carries it.
pub fn request_to_json(body: &[u8]) -> Result<Vec<u8>, String> {
    if body.is_empty() {
        return Ok(b"{}".to_vec());
    }
    let value: Cbor = ciborium::from_reader(body).map_err(|e| format!("not CBOR: {e}"))?;
    serde_json::to_vec(&to_json(value)).map_err(|e| e.to_string())
}

fn to_json(value: Cbor) -> Json {
    match value {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(b),
        Cbor::Integer(i) => Json::from(i128::from(i) as i64),
        Cbor::Float(f) => Json::from(f),
        Cbor::Text(s) => Json::String(s),
        // Blobs travel base64-encoded in JSON.
        Cbor::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        // Tag 1: epoch seconds, which is also JSON's form of a timestamp.
        Cbor::Tag(_, inner) => to_json(*inner),
        Cbor::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Cbor::Map(entries) => Json::Object(
            entries
                .into_iter()
                .filter_map(|(k, v)| Some((k.into_text().ok()?, to_json(v))))
                .collect(),
        ),
        _ => Json::Null,
    }
}

/// Makes a CBOR request the JSON-protocol request moto routes: `POST /`
/// with the operation in `X-Amz-Target`.
pub fn as_json_request(parts: &mut hyper::http::request::Parts, operation: &str) {
    parts.uri = hyper::Uri::from_static("/");
    let h = &mut parts.headers;
    for name in [
        "smithy-protocol",
        "accept",
        "content-length",
        "content-type",
    ] {
        h.remove(name);
    }
    let json = hyper::header::HeaderValue::from_static("application/x-amz-json-1.0");
    h.insert("content-type", json);
    let target = format!("{TARGET_PREFIX}.{operation}");
    h.insert(
        "x-amz-target",
        target.parse().expect("an operation name is a header value"),
    );
}

/// An answer in JSON (moto's, or an injected fault's) as RPC v2 CBOR sends it.
pub async fn as_cbor_response(
    operation: &str,
    answer: hyper::Response<http_body_util::Full<bytes::Bytes>>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use http_body_util::BodyExt;
    let (mut parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let success = parts.status.is_success();
    let cbor = response_to_cbor(operation, success, &body);
    let h = &mut parts.headers;
    h.remove("content-length");
    h.insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/cbor"),
    );
    h.insert(
        "smithy-protocol",
        hyper::header::HeaderValue::from_static("rpc-v2-cbor"),
    );
    hyper::Response::from_parts(parts, http_body_util::Full::new(bytes::Bytes::from(cbor)))
}

/// moto's JSON answer to `operation` as CBOR: the output's shape when it
/// succeeded, an error map otherwise.
pub fn response_to_cbor(operation: &str, success: bool, body: &[u8]) -> Vec<u8> {
    let json: Json = match body.is_empty() {
        true => Json::Object(Default::default()),
        false => serde_json::from_slice(body).unwrap_or(Json::Object(Default::default())),
    };
    let shape = match success {
        true => model().output_of(operation),
        false => None,
    };
    let mut out = Vec::new();
    let value = model().to_cbor(shape.as_deref(), &json);
    ciborium::into_writer(&value, &mut out).expect("writing to a Vec");
    out
}

/// The shapes of CloudWatch's model: each one's JSON form.
struct Model {
    shapes: HashMap<String, Json>,
    outputs: HashMap<String, String>,
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load().unwrap_or_else(|e| panic!("CloudWatch's model: {e}")))
}

impl Model {
    /// botocore's model of CloudWatch, from the venv moto runs in.
    fn load() -> Result<Model, String> {
        let lib = crate::repo_root().join(".venv/lib");
        let python = std::fs::read_dir(&lib)
            .map_err(|e| format!("{}: {e}", lib.display()))?
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .ok_or("no python3 in .venv/lib")?;
        let path = python
            .path()
            .join("site-packages/botocore/data/cloudwatch/2010-08-01/service-2.json.gz");
        Model::read(&path)
    }

    fn read(path: &Path) -> Result<Model, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        let doc: Json = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let shapes = doc["shapes"].as_object().ok_or("no shapes")?;
        let operations = doc["operations"].as_object().ok_or("no operations")?;
        let outputs = operations.iter().filter_map(|(name, op)| {
            let shape = op["output"]["shape"].as_str()?;
            Some((name.clone(), shape.to_string()))
        });
        Ok(Model {
            shapes: shapes.clone().into_iter().collect(),
            outputs: outputs.collect(),
        })
    }

    fn output_of(&self, operation: &str) -> Option<String> {
        self.outputs.get(operation).cloned()
    }

    /// A JSON value as CBOR, typed by its shape where the model has one.
    fn to_cbor(&self, shape: Option<&str>, value: &Json) -> Cbor {
        let shape = shape.and_then(|s| self.shapes.get(s));
        let kind = shape.and_then(|s| s["type"].as_str()).unwrap_or("");
        let member = |key: &str| shape.and_then(|s| s[key]["shape"].as_str());
        match (kind, value) {
            (_, Json::Null) => Cbor::Null,
            ("timestamp", Json::Number(n)) => {
                let secs = n.as_f64().unwrap_or_default();
                Cbor::Tag(1, Box::new(number(secs, true)))
            }
            ("blob", Json::String(s)) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(s);
                Cbor::Bytes(bytes.unwrap_or_else(|_| s.clone().into_bytes()))
            }
            ("double" | "float", Json::Number(n)) => Cbor::Float(n.as_f64().unwrap_or_default()),
            ("structure", Json::Object(o)) => Cbor::Map(
                o.iter()
                    .map(|(k, v)| {
                        let member = shape.and_then(|s| s["members"][k]["shape"].as_str());
                        (Cbor::Text(k.clone()), self.to_cbor(member, v))
                    })
                    .collect(),
            ),
            (_, Json::Object(o)) => Cbor::Map(
                o.iter()
                    .map(|(k, v)| (Cbor::Text(k.clone()), self.to_cbor(member("value"), v)))
                    .collect(),
            ),
            (_, Json::Array(items)) => Cbor::Array(
                items
                    .iter()
                    .map(|v| self.to_cbor(member("member"), v))
                    .collect(),
            ),
            (_, Json::Number(n)) => match n.as_i64() {
                Some(i) => Cbor::Integer(i.into()),
                None => number(n.as_f64().unwrap_or_default(), false),
            },
            (_, Json::Bool(b)) => Cbor::Bool(*b),
            (_, Json::String(s)) => Cbor::Text(s.clone()),
        }
    }
}

/// A number as CBOR: whole seconds of a timestamp as an integer.
fn number(n: f64, timestamp: bool) -> Cbor {
    if timestamp && n.fract() == 0.0 && n.abs() < i64::MAX as f64 {
        Cbor::Integer((n as i64).into())
    } else {
        Cbor::Float(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_map_reads_as_json_with_epoch_second_timestamps() {
        let input = Cbor::Map(vec![
            (
                Cbor::Text("AlarmNames".into()),
                Cbor::Array(vec![Cbor::Text("a".into())]),
            ),
            (
                Cbor::Text("StartDate".into()),
                Cbor::Tag(1, Box::new(Cbor::Float(1.5e9))),
            ),
            (Cbor::Text("MaxRecords".into()), Cbor::Integer(10.into())),
        ]);
        let mut body = Vec::new();
        ciborium::into_writer(&input, &mut body).unwrap();
        let json: Json = serde_json::from_slice(&request_to_json(&body).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"AlarmNames": ["a"], "StartDate": 1.5e9, "MaxRecords": 10})
        );
    }

    #[test]
    fn an_answer_is_typed_by_the_operations_output_shape() {
        let body = br#"{"MetricAlarms": [{"AlarmName": "a", "Threshold": 3,
            "StateUpdatedTimestamp": 1700000000.25, "EvaluationPeriods": 2}]}"#;
        let out: Cbor =
            ciborium::from_reader(&response_to_cbor("DescribeAlarms", true, body)[..]).unwrap();
        let alarm = &out.as_map().unwrap()[0].1.as_array().unwrap()[0];
        let field = |name: &str| {
            let entries = alarm.as_map().unwrap();
            entries
                .iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(field("Threshold"), Cbor::Float(3.0));
        assert_eq!(
            field("StateUpdatedTimestamp"),
            Cbor::Tag(1, Box::new(Cbor::Float(1_700_000_000.25)))
        );
        assert_eq!(field("EvaluationPeriods"), Cbor::Integer(2.into()));
    }

    #[test]
    fn an_empty_answer_is_an_empty_map() {
        let out: Cbor =
            ciborium::from_reader(&response_to_cbor("PutMetricAlarm", true, b"")[..]).unwrap();
        assert_eq!(out, Cbor::Map(Vec::new()));
    }

    #[test]
    fn an_error_keeps_its_type_and_message() {
        let body = br#"{"__type": "com.amazonaws.cloudwatch#LimitExceeded", "message": "full"}"#;
        let out: Cbor =
            ciborium::from_reader(&response_to_cbor("PutMetricAlarm", false, body)[..]).unwrap();
        assert_eq!(
            out,
            Cbor::Map(vec![
                (
                    Cbor::Text("__type".into()),
                    Cbor::Text("com.amazonaws.cloudwatch#LimitExceeded".into())
                ),
                (Cbor::Text("message".into()), Cbor::Text("full".into())),
            ])
        );
    }
}

//! Errors as each AWS service's wire protocol carries them, so the SDK parses
//! an injected fault exactly as it would parse AWS's own (see
//! `../shared/spec/wire-protocols.md`).

/// Status, headers and body of an error answer from `service`.
pub fn error(
    service: &str,
    status: u16,
    code: &str,
    message: &str,
) -> (u16, Vec<(String, String)>, String) {
    let h = |k: &str, v: &str| (k.to_string(), v.to_string());
    match service {
        // awsJson 1.0; the query-compatible header names the Query-era code.
        "sqs" => (
            status,
            vec![
                h("content-type", "application/x-amz-json-1.0"),
                h("x-amzn-query-error", &format!("{code};Sender")),
            ],
            serde_json::json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": message})
                .to_string(),
        ),
        // awsJson 1.0 as CloudWatch answers it (awsQueryCompatible); the
        // proxy turns it into CBOR for a client speaking RPC v2 CBOR.
        "monitoring" => (
            status,
            vec![
                h("content-type", "application/x-amz-json-1.0"),
                h(
                    "x-amzn-query-error",
                    &format!("{code};{}", if status >= 500 { "Receiver" } else { "Sender" }),
                ),
            ],
            serde_json::json!({"__type": format!("com.amazonaws.cloudwatch#{code}"), "message": message})
                .to_string(),
        ),
        "logs" => (
            status,
            vec![h("content-type", "application/x-amz-json-1.1")],
            serde_json::json!({"__type": code, "message": message}).to_string(),
        ),
        // restJson 1: the code travels in a header.
        "lambda" => (
            status,
            vec![
                h("content-type", "application/json"),
                h("x-amzn-errortype", code),
            ],
            serde_json::json!({"Type": "User", "message": message}).to_string(),
        ),
        "ec2" => (
            status,
            vec![h("content-type", "text/xml")],
            format!(
                "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>00000000-0000-4000-8000-000000000000</RequestID></Response>"
            ),
        ),
        // restXml, the error unwrapped: S3.
        "s3" => (
            status,
            vec![h("content-type", "application/xml")],
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>0000000000000000</RequestId></Error>"
            ),
        ),
        // awsQuery: SNS, IAM, STS.
        _ => (
            status,
            vec![h("content-type", "text/xml")],
            format!(
                "<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>00000000-0000-4000-8000-000000000000</RequestId></ErrorResponse>",
                if status >= 500 { "Receiver" } else { "Sender" }
            ),
        ),
    }
}

/// A successful answer to `operation` with nothing in it, in the service's
/// protocol: what a client gets from a truncated or malformed answer.
pub fn empty_answer(service: &str, operation: &str) -> (Vec<(String, String)>, String) {
    let h = |k: &str, v: &str| (k.to_string(), v.to_string());
    match service {
        "sqs" | "monitoring" => (vec![h("content-type", "application/x-amz-json-1.0")], "{}".into()),
        "logs" => (vec![h("content-type", "application/x-amz-json-1.1")], "{}".into()),
        "lambda" => (vec![h("content-type", "application/json")], "{}".into()),
        "ec2" => (
            vec![h("content-type", "text/xml")],
            format!("<{operation}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>00000000-0000-4000-8000-000000000000</requestId></{operation}Response>"),
        ),
        _ => (
            vec![h("content-type", "text/xml")],
            format!("<{operation}Response><{operation}Result></{operation}Result><ResponseMetadata><RequestId>00000000-0000-4000-8000-000000000000</RequestId></ResponseMetadata></{operation}Response>"),
        ),
    }
}

/// The service's own throttling error, as AWS sends it.
pub fn throttling(service: &str) -> (u16, Vec<(String, String)>, String) {
    match service {
        "ec2" => error(
            service,
            503,
            "RequestLimitExceeded",
            "Request limit exceeded.",
        ),
        "lambda" => error(service, 429, "TooManyRequestsException", "Rate exceeded"),
        "sqs" => error(service, 400, "RequestThrottled", "Rate exceeded"),
        "logs" => error(service, 400, "ThrottlingException", "Rate exceeded"),
        "s3" => error(service, 503, "SlowDown", "Please reduce your request rate."),
        _ => error(service, 400, "Throttling", "Rate exceeded"),
    }
}

//! The Lambda entry point: the `bootstrap` executable of a provided.al2023
//! function, speaking the Lambda Runtime API through lambda_runtime.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let clients = remediation::Clients::new(&sdk);
    let clients = &clients;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let config = remediation::Config::from_env(|k| std::env::var(k).ok())?;
        let deadline = remediation::Deadline::from_epoch_ms(event.context.deadline);
        remediation::handle(
            clients,
            &config,
            &event.payload,
            deadline,
            &event.context.request_id,
        )
        .await
        .map_err(Error::from)
    }))
    .await
}

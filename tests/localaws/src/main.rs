//! `localaws [--calls-log FILE] [--latency-ms N]`: starts moto behind the
//! recording proxy (adding N ms to every call), prints
//! `AWS_ENDPOINT_URL=<url>` on stdout and runs until SIGINT or SIGTERM, then
//! stops moto.

use std::io::Write;

const USAGE: &str = "localaws [--calls-log FILE] [--latency-ms N]

Starts moto (server mode, installed by scripts/setup) behind stackctl's
recording proxy, prints AWS_ENDPOINT_URL=<url> and serves until SIGINT or
SIGTERM. --calls-log appends every call to FILE as a JSON line;
--latency-ms adds N ms to every call.";

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    if let Some(unknown) = args
        .iter()
        .skip(1)
        .find(|a| a.starts_with('-') && !matches!(a.as_str(), "--calls-log" | "--latency-ms"))
    {
        eprintln!("localaws: unknown option {unknown}\n\n{USAGE}");
        std::process::exit(2);
    }
    let aws = localaws::LocalAws::start()?;
    if let Some(pos) = args.iter().position(|a| a == "--calls-log") {
        let path = args
            .get(pos + 1)
            .ok_or_else(|| std::io::Error::other("--calls-log needs a file"))?;
        aws.log_calls_to(std::path::Path::new(path))?;
    }
    if let Some(pos) = args.iter().position(|a| a == "--latency-ms") {
        let ms: u64 = args
            .get(pos + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("--latency-ms needs a number"))?;
        aws.latency(std::time::Duration::from_millis(ms));
    }
    println!("AWS_ENDPOINT_URL={}", aws.endpoint);
    std::io::stdout().flush()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<_, std::io::Error>(())
    })?;
    drop(aws);
    std::process::exit(0)
}

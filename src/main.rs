use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match stackctl::cli::run(stackctl::cli::Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            // An error can quote a value (AWS's messages do): masked if
            // sensitive. A closed stderr drops it (the exit code still says).
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                stackctl::sensitive::redact(&format!("{err:#}"))
            );
            ExitCode::from(1)
        }
    }
}

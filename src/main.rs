use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match stackctl::cli::run(stackctl::cli::Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            // Masked by the command that made it (AWS's messages can quote
            // a value). A closed stderr drops it (the exit code still says).
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            ExitCode::from(1)
        }
    }
}

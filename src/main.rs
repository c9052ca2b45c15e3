use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match stackctl::cli::run(stackctl::cli::Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

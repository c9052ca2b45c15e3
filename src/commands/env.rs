//! `stackctl env list`: the environments beside the stack file.

use std::process::ExitCode;

use anyhow::Result;

use super::{runtime, FileArgs};
use crate::config::{env_names, Stack};

#[derive(clap::Subcommand, Debug)]
pub enum EnvCommand {
    /// Each environment (env/NAME.yaml), its account and region, and the
    /// serial of its state (read without the lock).
    List {
        #[command(flatten)]
        file: FileArgs,
    },
}

pub fn run(command: EnvCommand) -> Result<ExitCode> {
    let EnvCommand::List { file } = command;
    let base = Stack::load(&file.file)?;
    let names = env_names(&base.dir());
    if names.is_empty() {
        println!(
            "No environments: add env/NAME.yaml beside {}.",
            file.file.display()
        );
    }
    for name in names {
        let stack = Stack::load_in(&file.file, Some(&name))?;
        let env = stack.env.as_ref();
        let account = env
            .and_then(|e| e.account.as_deref())
            .unwrap_or("any account");
        let region = stack.region.as_deref().unwrap_or("the profile's region");
        let serial = runtime()?.block_on(async {
            let mut backend = crate::state::open(&stack, &file.backend_config).await?;
            let state = backend.load(&stack.name).await?;
            let serial = match state.serial {
                0 => "no state yet".to_string(),
                n => format!("serial {n}, {} resources", state.resources.len()),
            };
            Ok::<_, anyhow::Error>(format!("{serial} at {}", backend.location()))
        })?;
        println!("{name}\t{account}\t{region}\t{serial}");
    }
    Ok(ExitCode::SUCCESS)
}

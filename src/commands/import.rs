//! `stackctl import`: existing resources into the state, or a stack file
//! written for them (`--generate-config`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::{context, load, masked, runtime, stack_values, FileArgs, Printer, Session, VarArgs};
use crate::import::{Imported, Missed};
use crate::plan;
use crate::providers::Ctx;

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Look up every resource of the stack file by its name (as a run
    /// after a crash does) and import what exists; list what does not.
    #[arg(long)]
    pub all: bool,
    /// Write a stack file for existing resources instead (no state change).
    #[arg(long, value_name = "FILE", conflicts_with = "all")]
    pub generate_config: Option<PathBuf>,
    /// With --generate-config: the `stack:` name of the new file.
    #[arg(long, default_value = "imported")]
    pub stack_name: String,
    /// LOGICAL_ID PHYSICAL_ID; with --generate-config, TYPE.ID=PHYSICAL_ID...
    pub args: Vec<String>,
}

/// `import ID PHYSICAL_ID`, `import --all`, or `--generate-config`.
pub fn run(a: ImportArgs) -> Result<ExitCode> {
    match &a.generate_config {
        Some(out) => generate_config(&a.file.file, out, &a.stack_name, &a.args),
        None => import(&a.file, &a.vars.pairs()?, a.all, &a.args),
    }
}

fn import(
    file: &FileArgs,
    vars: &[(String, String)],
    all: bool,
    args: &[String],
) -> Result<ExitCode> {
    let single = match (all, args) {
        (true, []) => None,
        (false, [id, physical_id]) => Some((id.clone(), physical_id.clone())),
        _ => bail!("give LOGICAL_ID PHYSICAL_ID, or --all (or --generate-config FILE TYPE.ID=PHYSICAL_ID...)"),
    };
    let v = load(file, vars)?;
    let result = runtime()?.block_on(async {
        let mut session = Session::open(&v.stack, &file.backend_config, "import").await?;
        let cx = context(&v).await;
        session.pin(&cx).await?;
        let values = stack_values(&v, &cx).await?;
        let data = plan::read_data(&cx, &v, &values).await?;
        let state = &mut session.state;
        let (imported, missed) = match single {
            Some((id, physical_id)) => {
                let one =
                    crate::import::one(&v, &cx, state, &values, &data, &id, &physical_id).await;
                session.backend.save(state).await?;
                (vec![one?], Vec::new())
            }
            None => {
                crate::import::all(&v, &cx, state, &values, &data, session.backend.as_mut()).await?
            }
        };
        session.commit().await?;
        tell(&imported, &missed);
        Ok(ExitCode::SUCCESS)
    });
    result.map_err(|e| masked(&v.redactor, e))
}

fn tell(imported: &[Imported], missed: &[Missed]) {
    for i in imported {
        let tags = match i.tagged {
            true => ", tagged stackctl:stack and stackctl:id",
            false => "",
        };
        println!(
            "{}: imported {} ({}{tags})",
            i.id, i.physical_id, i.type_name
        );
    }
    for m in missed {
        println!("{}: not imported: {}", m.id, m.why);
    }
    let tagged = imported.iter().filter(|i| i.tagged).count();
    println!(
        "\nImported {} resource(s); {} not found. Nothing was created, changed or deleted in AWS but the ownership tags of {tagged} resource(s).\nRun `stackctl plan` to see how what exists differs from the stack file.",
        imported.len(),
        missed.len()
    );
}

/// `import --generate-config FILE TYPE.ID=PHYSICAL_ID...`: reads only.
fn generate_config(file: &Path, out: &Path, stack_name: &str, args: &[String]) -> Result<ExitCode> {
    let targets = args
        .iter()
        .map(|a| crate::generate::parse_target(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!(e))?;
    if targets.is_empty() {
        bail!("--generate-config needs TYPE.LOGICAL_ID=PHYSICAL_ID arguments, such as aws_sns_topic.alerts=arn:aws:sns:...");
    }
    if out.exists() {
        bail!(
            "{} exists: --generate-config writes a new file and never overwrites one",
            out.display()
        );
    }
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let text = runtime()?.block_on(async {
        let mut cx = Ctx::new(stack_name, None, &dir, None).await;
        cx.events = Arc::new(Printer(Arc::default()));
        crate::generate::generate(&cx, stack_name, &targets).await
    })?;
    // Only its owner reads it, as the state: it describes what exists.
    crate::state::local::write_private(out, text.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "Wrote {} resource(s) to {}; nothing was changed in AWS. Review it, then `stackctl import --all -f {}`.",
        targets.len(),
        out.display(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

//! The command line: the arguments, and their dispatch to the commands
//! (`crate::commands`), one call each.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::commands::{self, FileArgs, VarArgs};

#[derive(Parser, Debug)]
#[command(
    name = "stackctl",
    version,
    about = "Infrastructure as code for AWS: stack.yaml -> plan -> apply"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check the stack file offline: schema, types, references, cycles, AWS's rules.
    Validate {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Prove the stack's links (alarm → function, topic → queue, function →
    /// what its code needs) and lint it, offline. Exit 1 on an error finding
    /// (or any, with --strict).
    Check(commands::review::CheckArgs),
    /// Drive log lines through the deployed pipeline on a virtual clock: metric
    /// filters, alarms, the function (run locally under a Runtime API), the
    /// instance, the topic and the queue; print the timeline.
    Simulate(commands::simulate::SimulateArgs),
    /// Try a filter pattern on log lines, as AWS's TestMetricFilter does.
    TestFilter(commands::review::TestFilterArgs),
    /// Draw the stack: resources by service, dependencies dotted, dataflow
    /// links green when proven and red when not.
    Graph(commands::review::GraphArgs),
    /// Print the IAM policy that running stackctl on this stack needs
    /// (--for plan|apply|destroy|all), offline.
    Permissions(commands::review::PermissionsArgs),
    /// Write one self-contained HTML page for a reviewer: the stack drawn
    /// with check's verdict on each link, the plan, the findings, and a
    /// simulation's timeline (--events).
    Review(commands::plan::ReviewArgs),
    /// Show what apply would change.
    Plan(commands::plan::PlanArgs),
    /// Make AWS match the stack file (or apply a saved plan).
    Apply(commands::apply::ApplyArgs),
    /// Delete every resource recorded in the state, dependents first.
    Destroy(commands::apply::ChangeArgs),
    /// Build the code of every function with `source:`; print each artifact.
    Build {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Print the stack's outputs.
    Output {
        #[command(flatten)]
        file: FileArgs,
        /// One output, printed raw.
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write a commented first stack (a log, its alarm, a topic and a queue)
    /// to start from.
    Init(commands::init::InitArgs),
    /// Print the JSON Schema of stack.yaml (for editors), or with --markdown
    /// the resource types' reference (docs/resources.md).
    Schema {
        #[arg(long)]
        markdown: bool,
    },
    /// Print shell completions: stackctl completions bash|zsh|fish.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The stack's environments (env/NAME.yaml): `stackctl env list`.
    Env {
        #[command(subcommand)]
        command: commands::env::EnvCommand,
    },
    /// Inspect the state.
    State {
        #[command(subcommand)]
        command: commands::state::StateCommand,
    },
    /// Take resources that already exist into the state as the stack's own. It
    /// reads them; the only change in AWS is their ownership tags.
    ///
    ///   stackctl import LOGICAL_ID PHYSICAL_ID
    ///   stackctl import --all
    ///   stackctl import --generate-config FILE TYPE.ID=PHYSICAL_ID...
    Import(commands::import::ImportArgs),
    /// Clear the lock of a run that ended without releasing it, by the lock id
    /// its error printed.
    ForceUnlock {
        #[command(flatten)]
        file: FileArgs,
        /// The lock id, as the "state is locked" error printed it.
        lock_id: String,
        /// Remove a lock whose holder may still be running without asking.
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    use commands::{apply, build, import, output, plan, review, simulate, state};
    match cli.command {
        Command::Validate { file, vars } => review::validate(&file, &vars.pairs()?),
        Command::Check(a) => review::check(a),
        Command::Graph(a) => review::graph(a),
        Command::Permissions(a) => review::permissions(a),
        Command::TestFilter(a) => review::test_filter(a),
        Command::Schema { markdown } => review::schema(markdown),
        Command::Init(a) => commands::init::run(a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = std::io::stdout();
            clap_complete::generate(shell, &mut Cli::command(), "stackctl", &mut out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(a) => simulate::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Review(a) => plan::review(a),
        Command::Apply(a) => apply::run(a),
        Command::Destroy(a) => apply::destroy(a),
        Command::Build { file, vars } => build::run(&file, &vars.pairs()?),
        Command::Output { file, name, json } => output::run(&file, name, json),
        Command::Import(a) => import::run(a),
        Command::State { command } => state::run(command),
        Command::Env { command } => commands::env::run(command),
        Command::ForceUnlock { file, lock_id, yes } => state::force_unlock(&file, &lock_id, yes),
    }
}

//! The `checkpointd` command: parses flags, sets up logging and runs a subcommand.

mod args;
mod dev;
mod health;
mod status;

use std::process::ExitCode;

use clap::Parser;

pub use args::{
    Cli, Command, DbArgs, DevArgs, HealthArgs, LogArgs, MigrateArgs, PoolArgs, RetryArgs, ServeArgs, ServerArgs,
    StatusArgs,
};
pub use status::render as render_status;

use crate::app::Application;
use crate::config::PoolConfig;
use crate::storage::{Pool, migrations};

/// Runs the command line; the exit code says how it went.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = crate::telemetry::init(&cli.log.config()) {
        eprintln!("cannot set up logging: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    let outcome = match command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(args) => migrate(*args).await,
        Command::Health(args) => return health::check(&args).await,
        Command::Status(args) => return status::show(&args).await,
        Command::Dev(args) => dev::run(*args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "checkpointd stopped with an error");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) type AnyError = Box<dyn std::error::Error + Send + Sync>;

async fn serve(args: ServeArgs) -> Result<(), AnyError> {
    let app = Application::build(args.config()?).await?;
    app.run_until_stopped(crate::shutdown::signal()).await?;
    Ok(())
}

async fn migrate(args: MigrateArgs) -> Result<(), AnyError> {
    let database = args.db.resolve()?;
    let pool_config = PoolConfig {
        max_size: 1,
        min_idle: 0,
        acquire_timeout: database.connect_timeout,
        idle_timeout: std::time::Duration::from_secs(60),
        max_lifetime: std::time::Duration::from_secs(3600),
        lifetime_jitter: std::time::Duration::ZERO,
        validation_timeout: std::time::Duration::from_secs(5),
        validation_skip: std::time::Duration::ZERO,
        recreation_enabled: false,
        recreate_after_failures: 1,
        recreation_cooldown: std::time::Duration::ZERO,
    };
    let pool = Pool::new(database, pool_config)?;
    let report = migrations::run(&pool).await?;
    println!(
        "schema at version {}; applied {:?}; rebuilt indexes {:?}",
        report.version, report.applied, report.repaired_indexes
    );
    Ok(())
}

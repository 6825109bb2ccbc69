//! The `checkpointd` command: parses flags, sets up logging and runs a subcommand.

mod args;
mod dev;
mod health;
mod status;

use std::process::ExitCode;

use clap::Parser;

pub use args::{
    Cli, Command, DbArgs, DevArgs, Env, HealthArgs, LogArgs, MigrateArgs, PoolArgs, RetryArgs, ServeArgs, ServerArgs,
    StatusArgs, process_env,
};

use crate::app::Application;
use crate::config::PoolConfig;
use crate::storage::{Pool, migrations};
use crate::telemetry::TelemetryConfig;

/// Runs the command line; the exit code says how it went.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let telemetry = match crate::telemetry::init(&telemetry_config(&cli)) {
            Ok(telemetry) => telemetry,
            Err(e) => {
                eprintln!("cannot set up telemetry: {e}");
                return ExitCode::FAILURE;
            }
        };
        let code = run(cli.command, telemetry.prometheus_registry()).await;
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        code
    })
}

/// Servers export traces and metrics; one-shot commands only log, to stderr (their stdout is
/// their result: a status).
fn telemetry_config(cli: &Cli) -> TelemetryConfig {
    let server = match &cli.command {
        Command::Serve(args) => Some(&args.server),
        Command::Dev(args) => Some(&args.serve.server),
        _ => None,
    };
    TelemetryConfig {
        log: cli.log.config(),
        otlp: server.is_some(),
        prometheus: server.is_some_and(|s| s.metrics_listen.is_some()),
        logs_to_stderr: server.is_none(),
    }
}

async fn run(command: Command, prometheus: Option<prometheus::Registry>) -> ExitCode {
    let outcome = match command {
        Command::Serve(args) => serve(*args, prometheus).await,
        Command::Migrate(args) => migrate(*args).await,
        Command::Health(args) => return health::check(&args).await,
        Command::Status(args) => return status::show(&args).await,
        Command::Dev(args) => dev::run(*args, prometheus).await,
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

async fn serve(args: ServeArgs, prometheus: Option<prometheus::Registry>) -> Result<(), AnyError> {
    let app = Application::build(args.config()?).await?.with_prometheus(prometheus);
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

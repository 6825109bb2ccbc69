//! `checkpointd dev`: a throwaway PostgreSQL plus the service, for a first run with nothing set up.

use crate::app::Application;
use crate::cli::{AnyError, DevArgs, process_env};
use crate::config::{DatabaseFlags, Secret, SslMode, resolve_database};
use crate::devdb::{ClusterOptions, LocalCluster};

/// Starts PostgreSQL, serves until Ctrl-C, then stops both.
pub(super) async fn run(args: DevArgs, prometheus: Option<prometheus::Registry>) -> Result<(), AnyError> {
    let options = ClusterOptions { data_dir: args.data_dir.clone(), port: args.pg_port, ..Default::default() };
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(options)).await??;
    let url = cluster.url("postgres");
    let flags =
        DatabaseFlags { url: Some(Secret::new(url.clone())), ssl_mode: Some(SslMode::Disable), ..Default::default() };
    let database = resolve_database(&flags, &|_| None)?;
    let mut config = args.serve.config_for(database, &process_env)?;
    config.migrate_on_start = true;
    let app = Application::build(config).await?.with_prometheus(prometheus);
    let address = app.local_addr()?;
    println!("checkpointd dev is running.");
    println!("  PostgreSQL: {url} (data in {})", cluster.data_dir().display());
    println!("  gRPC:       {address}  (health: checkpointd health --address http://{address})");
    println!("  Python:     GrpcCheckpointSaver(\"{address}\")");
    println!("Press Ctrl-C to stop the server and the database.");
    let served = app.run_until_stopped(crate::shutdown::signal()).await;
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    served?;
    Ok(())
}

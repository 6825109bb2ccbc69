//! `checkpointd health`: a gRPC health check usable as a container HEALTHCHECK.

use std::process::ExitCode;

use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::HealthArgs;

/// Exit codes: 0 SERVING, 1 any other status, 2 no answer.
pub(super) async fn check(args: &HealthArgs) -> ExitCode {
    match ask(args).await {
        Ok(ServingStatus::Serving) => {
            println!("{}: SERVING", display_name(&args.service));
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{}: {}", display_name(&args.service), status.as_str_name());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("health check of {} failed: {e}", args.address());
            ExitCode::from(2)
        }
    }
}

fn display_name(service: &str) -> &str {
    if service.is_empty() { "checkpointd" } else { service }
}

async fn ask(args: &HealthArgs) -> Result<ServingStatus, Box<dyn std::error::Error>> {
    let channel =
        Endpoint::from_shared(args.address())?.connect_timeout(args.timeout).timeout(args.timeout).connect().await?;
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: args.service.clone() }).await?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
}

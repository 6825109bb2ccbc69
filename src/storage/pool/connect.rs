//! Turns resolved settings into tokio-postgres's typed configuration, one per host.
//!
//! Every socket option goes through the typed builder, never a libpq string: tokio-postgres
//! reads `tcp_user_timeout` in a connection string as seconds where libpq means milliseconds.
//! One configuration per host lets the manager bound each host's whole set-up (TCP, TLS,
//! authentication, the read-write check) by `connect_timeout`, as libpq does; tokio-postgres
//! bounds only the TCP connect.

use tokio_postgres::config::{SslMode as PgSslMode, TargetSessionAttrs};

use crate::config::{DatabaseConfig, SslMode, TargetSession};

/// One tokio-postgres configuration per host of `db`, in the order libpq tries them. Ports pair
/// with hosts one to one, or a single port serves every host.
pub(crate) fn host_configs(db: &DatabaseConfig) -> Vec<tokio_postgres::Config> {
    db.hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = db.ports.get(i).or(db.ports.first()).copied().unwrap_or(DEFAULT_PORT);
            let mut config = base_config(db);
            config.host(host).port(port);
            config
        })
        .collect()
}

/// PostgreSQL's default port, for hosts given without one.
const DEFAULT_PORT: u16 = 5432;

/// Everything but the host and port.
fn base_config(db: &DatabaseConfig) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .user(&db.user)
        .dbname(&db.dbname)
        .application_name(&db.application_name)
        .ssl_mode(match db.tls.mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        })
        .connect_timeout(db.connect_timeout)
        .keepalives(db.keepalives)
        .keepalives_idle(db.keepalives_idle)
        .keepalives_interval(db.keepalives_interval)
        .keepalives_retries(db.keepalives_retries)
        .tcp_user_timeout(db.tcp_user_timeout)
        .target_session_attrs(match db.target_session {
            TargetSession::Any => TargetSessionAttrs::Any,
            TargetSession::ReadWrite => TargetSessionAttrs::ReadWrite,
        });
    if let Some(password) = &db.password {
        config.password(password.expose());
    }
    config
}

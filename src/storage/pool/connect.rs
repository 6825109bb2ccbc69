//! Turns resolved settings into tokio-postgres's typed configuration.
//!
//! Every socket option goes through the typed builder, never a libpq string: tokio-postgres
//! reads `tcp_user_timeout` in a connection string as seconds where libpq means milliseconds.

use tokio_postgres::config::{SslMode as PgSslMode, TargetSessionAttrs};

use crate::config::{DatabaseConfig, SslMode, TargetSession};

/// The tokio-postgres configuration for `db`.
pub(crate) fn pg_config(db: &DatabaseConfig) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    for host in &db.hosts {
        config.host(host);
    }
    for port in &db.ports {
        config.port(*port);
    }
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

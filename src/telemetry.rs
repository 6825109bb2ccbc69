//! Logging: `RUST_LOG`-style filtering, text or JSON lines, and the original deployment's
//! `DEBUG` / `VERBOSE_SSL_LOGGING` switches mapped to levels.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// How to log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Text or JSON.
    pub format: LogFormat,
    /// An `EnvFilter` directive (`RUST_LOG` syntax); `None` derives one from the switches.
    pub filter: Option<String>,
    /// `DEBUG=1`: debug level for checkpointd itself.
    pub debug: bool,
    /// `VERBOSE_SSL_LOGGING=true`: debug level for TLS and the connection pool.
    pub verbose_tls: bool,
}

/// The filter directive for `config`.
pub fn filter_directive(config: &LogConfig) -> String {
    if let Some(filter) = &config.filter {
        return filter.clone();
    }
    let mut directive = String::from(if config.debug { "info,checkpointd=debug" } else { "info" });
    if config.verbose_tls {
        // tokio_postgres logs statement parameters at debug level: payloads must not reach logs.
        directive.push_str(",rustls=debug,tokio_postgres_rustls=debug,checkpointd::pool=debug");
    }
    directive
}

/// Installs the global subscriber. Fails if one is already installed.
pub fn init(config: &LogConfig) -> Result<(), tracing_subscriber::util::TryInitError> {
    let filter = EnvFilter::try_new(filter_directive(config)).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match config.format {
        LogFormat::Json => registry.with(tracing_subscriber::fmt::layer().json().with_current_span(true)).try_init(),
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(filter: Option<&str>, debug: bool, verbose_tls: bool) -> LogConfig {
        LogConfig { format: LogFormat::Text, filter: filter.map(Into::into), debug, verbose_tls }
    }

    #[test]
    fn the_original_switches_map_to_levels() {
        assert_eq!(filter_directive(&config(None, false, false)), "info");
        assert_eq!(filter_directive(&config(None, true, false)), "info,checkpointd=debug");
        assert!(filter_directive(&config(None, false, true)).contains("rustls=debug"));
    }

    #[test]
    fn an_explicit_filter_wins() {
        assert_eq!(filter_directive(&config(Some("warn"), true, true)), "warn");
    }
}

//! Log lines: `RUST_LOG`-style filtering, text or JSON, and the original deployment's `DEBUG` /
//! `VERBOSE_SSL_LOGGING` switches mapped to levels. Lines inside a call carry its span fields,
//! including `trace_id`.

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::registry::LookupSpan;

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
pub(super) fn filter_directive(config: &LogConfig) -> String {
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

/// The span of a gRPC call (see `grpc::observe`), whose fields every log line inside the call carries.
pub(crate) const CALL_SPAN: &str = "grpc.server";

/// The formatting layer with its own filter (so the trace exporter sees spans even when logs
/// are quiet). The call span is always enabled here, whatever the level, so every line logged
/// inside a call carries the call's fields (method, thread, `trace_id`). The finer spans (pool
/// wait, database attempts) are for traces only: formatting them for logs cost about a tenth of
/// the server's CPU per call, so with traces off they are never built.
pub(crate) fn layer<S>(config: &LogConfig, to_stderr: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let directives = EnvFilter::try_new(filter_directive(config)).unwrap_or_else(|_| EnvFilter::new("info"));
    // The level hint lets disabled `debug!`/`trace!` sites (and `log` records from libraries)
    // return at their macro instead of reaching the subscriber on every call.
    let our_spans = filter_fn(|meta| {
        meta.is_span()
            && meta.name() == CALL_SPAN
            && meta.target().starts_with("checkpointd")
            && *meta.level() <= Level::INFO
    })
    .with_max_level_hint(Level::INFO);
    let filter = directives.or(our_spans);
    let writer = if to_stderr { BoxMakeWriter::new(std::io::stderr) } else { BoxMakeWriter::new(std::io::stdout) };
    match config.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).with_filter(filter).boxed(),
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
        assert!(!filter_directive(&config(None, true, true)).contains("tokio_postgres="));
    }

    #[test]
    fn an_explicit_filter_wins() {
        assert_eq!(filter_directive(&config(Some("warn"), true, true)), "warn");
    }
}

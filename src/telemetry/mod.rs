//! Telemetry: log lines, OpenTelemetry traces and metrics (OTLP), and a Prometheus endpoint.
//!
//! [`init`] installs one `tracing` subscriber with two independently filtered layers: log lines
//! (`RUST_LOG`) and, when OTLP is configured, spans of the `checkpointd` targets for the
//! exporter. It also installs the W3C trace-context and baggage propagators used to join the
//! callers' traces, and the global meter provider the instruments in `metrics` report to.

mod logs;
mod metrics;
mod otlp;
mod otlp_http;
pub(crate) mod prometheus;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub(crate) use logs::CALL_SPAN;
pub use logs::LogConfig;
pub use metrics::{RpcMetrics, observe_store};
pub use otlp::{OtlpError, OtlpSettings};

/// What to set up.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Log lines.
    pub log: LogConfig,
    /// Export traces and metrics over OTLP when the environment configures it.
    pub otlp: bool,
    /// Collect metrics for a Prometheus scrape endpoint.
    pub prometheus: bool,
    /// Write log lines to stderr instead of stdout (commands whose stdout is their result).
    pub logs_to_stderr: bool,
}

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP settings are unusable.
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    /// The Prometheus exporter could not be built.
    #[error("cannot set up the Prometheus exporter: {0}")]
    Prometheus(String),
    /// A subscriber was already installed.
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// The installed providers; [`Telemetry::shutdown`] flushes them.
#[derive(Debug)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
    registry: Option<::prometheus::Registry>,
}

/// Sets up logging, and tracing and metrics export from the process environment. Call once,
/// inside the tokio runtime (the OTLP exporters need it).
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    init_with_env(config, &|name| std::env::var(name).ok())
}

/// As [`init`], reading the OpenTelemetry variables through `env`.
pub fn init_with_env(
    config: &TelemetryConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Telemetry, TelemetryError> {
    let settings = if config.otlp { OtlpSettings::from_env(env)? } else { OtlpSettings::off() };
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let resource = otlp::resource(env);
    let tracer =
        settings.traces.as_ref().map(|endpoint| otlp::tracer_provider(endpoint, resource.clone())).transpose()?;
    let (meter, registry) = meter_provider(&settings, config.prometheus, resource)?;
    let spans = tracer.as_ref().map(|provider| {
        let only_ours = Targets::new().with_target("checkpointd", LevelFilter::INFO);
        tracing_opentelemetry::layer().with_tracer(provider.tracer("checkpointd")).with_filter(only_ours)
    });
    tracing_subscriber::registry().with(logs::layer(&config.log, config.logs_to_stderr)).with(spans).try_init()?;
    if let Some(provider) = &tracer {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    if let Some(provider) = &meter {
        opentelemetry::global::set_meter_provider(provider.clone());
    }
    tracing::info!(
        traces = %settings.traces.as_ref().map_or_else(|| "off".to_owned(), ToString::to_string),
        metrics = %settings.metrics.as_ref().map_or_else(|| "off".to_owned(), ToString::to_string),
        prometheus = config.prometheus,
        "telemetry configured"
    );
    Ok(Telemetry { tracer, meter, registry })
}

fn meter_provider(
    settings: &OtlpSettings,
    prometheus: bool,
    resource: opentelemetry_sdk::Resource,
) -> Result<(Option<SdkMeterProvider>, Option<::prometheus::Registry>), TelemetryError> {
    if settings.metrics.is_none() && !prometheus {
        return Ok((None, None));
    }
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    if let Some(endpoint) = &settings.metrics {
        builder = builder.with_reader(otlp::metric_reader(endpoint, settings.metric_interval)?);
    }
    let registry = prometheus.then(::prometheus::Registry::new);
    if let Some(registry) = &registry {
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
        builder = builder.with_reader(exporter);
    }
    Ok((Some(builder.build()), registry))
}

impl Telemetry {
    /// The registry the Prometheus endpoint serves, when metrics are collected for it.
    pub fn prometheus_registry(&self) -> Option<::prometheus::Registry> {
        self.registry.clone()
    }

    /// Exports everything recorded so far (blocking).
    pub fn flush(&self) {
        if let Some(tracer) = &self.tracer {
            let _ = tracer.force_flush();
        }
        if let Some(meter) = &self.meter {
            let _ = meter.force_flush();
        }
    }

    /// Flushes and stops the exporters (blocking; call after the server has drained).
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer
            && let Err(e) = tracer.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
        if let Some(meter) = self.meter
            && let Err(e) = meter.shutdown()
        {
            eprintln!("flushing metrics failed: {e}");
        }
    }
}

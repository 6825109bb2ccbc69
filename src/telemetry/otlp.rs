//! OTLP export configured by the standard OpenTelemetry environment variables.
//!
//! Off unless an endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the `_TRACES_` / `_METRICS_`
//! variants) and `OTEL_SDK_DISABLED` is not `true`. The exporters themselves read the headers,
//! compression and timeout variables, and the SDK reads `OTEL_TRACES_SAMPLER(_ARG)`,
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`. Export runs on the SDK's own threads with
//! bounded queues: a slow or absent collector drops data and logs, it never blocks a call.

use std::time::Duration;

use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Where to export each signal, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The collector for spans; none exported when `None`.
    pub traces: Option<String>,
    /// The collector for metrics; none exported when `None`.
    pub metrics: Option<String>,
    /// How often metrics are pushed (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds).
    pub metric_interval: Duration,
}

impl OtlpSettings {
    /// Nothing exported.
    pub fn off() -> Self {
        Self { traces: None, metrics: None, metric_interval: DEFAULT_METRIC_INTERVAL }
    }
}

const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);

/// Why the exporters could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// A setting is unusable.
    #[error("OpenTelemetry export: {0}")]
    Unsupported(String),
    /// The exporter refused its configuration.
    #[error("OpenTelemetry export: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
}

impl OtlpSettings {
    /// Reads the switches from `env`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, OtlpError> {
        let value = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if value("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(Self::off());
        }
        for signal in ["TRACES_", "METRICS_", ""] {
            let protocol = env(&format!("OTEL_EXPORTER_OTLP_{signal}PROTOCOL")).unwrap_or_default();
            if !protocol.is_empty() && protocol != "grpc" {
                return Err(OtlpError::Unsupported(format!(
                    "OTEL_EXPORTER_OTLP_{signal}PROTOCOL={protocol} is not supported; checkpointd exports OTLP over gRPC (port 4317)"
                )));
            }
        }
        let common = value("OTEL_EXPORTER_OTLP_ENDPOINT");
        let metric_interval = match value("OTEL_METRIC_EXPORT_INTERVAL") {
            Some(ms) => ms.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                OtlpError::Unsupported(format!("OTEL_METRIC_EXPORT_INTERVAL={ms} is not a number of milliseconds"))
            })?,
            None => DEFAULT_METRIC_INTERVAL,
        };
        Ok(Self {
            traces: value("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| common.clone()),
            metrics: value("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").or(common),
            metric_interval,
        })
    }
}

/// The resource describing this process; `OTEL_SERVICE_NAME` wins over the default name.
pub fn resource(env: &dyn Fn(&str) -> Option<String>) -> Resource {
    let builder =
        Resource::builder().with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if env("OTEL_SERVICE_NAME").is_some() { builder.build() } else { builder.with_service_name("checkpointd").build() }
}

/// A tracer provider exporting spans to `endpoint` over OTLP/gRPC in batches. Needs a tokio
/// runtime that outlives it (the gRPC channel's task runs there).
pub fn tracer_provider(endpoint: &str, resource: Resource) -> Result<SdkTracerProvider, OtlpError> {
    let exporter = SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()?;
    Ok(SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build())
}

/// A reader pushing metrics to `endpoint` over OTLP/gRPC every `interval`.
pub fn metric_reader(endpoint: &str, interval: Duration) -> Result<PeriodicReader<MetricExporter>, OtlpError> {
    let exporter = MetricExporter::builder().with_tonic().with_endpoint(endpoint).build()?;
    Ok(PeriodicReader::builder(exporter).with_interval(interval).build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<OtlpSettings, OtlpError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OtlpSettings::from_env(&|name| vars.get(name).cloned())
    }

    #[test]
    fn nothing_configured_means_nothing_exported() {
        assert_eq!(settings(&[]).expect("valid"), OtlpSettings::off());
    }

    #[test]
    fn a_common_endpoint_exports_both_signals_and_a_signal_endpoint_only_its_own() {
        let both = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]).expect("valid");
        assert_eq!(
            (both.traces.as_deref(), both.metrics.as_deref()),
            (Some("http://collector:4317"), Some("http://collector:4317"))
        );
        let traces = settings(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ])
        .expect("valid");
        assert_eq!((traces.traces.as_deref(), traces.metrics), (Some("http://t:4317"), None));
        assert_eq!(traces.metric_interval, Duration::from_millis(500));
    }

    #[test]
    fn the_sdk_switch_turns_everything_off() {
        let off = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_SDK_DISABLED", "true")])
            .expect("valid");
        assert_eq!(off, OtlpSettings::off());
    }

    #[test]
    fn protocols_other_than_grpc_are_refused_clearly() {
        let err = settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).expect_err("unsupported");
        assert!(err.to_string().contains("gRPC"), "{err}");
        assert!(settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).is_ok());
    }
}

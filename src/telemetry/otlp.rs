//! OTLP export configured by the standard OpenTelemetry environment variables.
//!
//! Off unless an endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the `_TRACES_` / `_METRICS_`
//! variants) and `OTEL_SDK_DISABLED` is not `true`. The exporters themselves read the headers,
//! compression and timeout variables, and the SDK reads `OTEL_TRACES_SAMPLER(_ARG)`,
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`. Export runs on the SDK's own threads with
//! bounded queues: a slow or absent collector drops data and logs, it never blocks a call.
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (or its `_TRACES_` / `_METRICS_` variant) picks `grpc` (the
//! default) or `http/protobuf`.

use std::fmt;
use std::time::Duration;

use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::otlp_http::RuntimeHttpClient;

/// Where to export each signal, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The collector for spans; none exported when `None`.
    pub traces: Option<Endpoint>,
    /// The collector for metrics; none exported when `None`.
    pub metrics: Option<Endpoint>,
    /// How often metrics are pushed (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds).
    pub metric_interval: Duration,
}

/// One signal's collector: the full URL the exporter sends to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// For gRPC the collector's address; for HTTP the whole URL, path included.
    pub url: String,
    /// The OTLP transport.
    pub protocol: Protocol,
}

/// The OTLP transports checkpointd speaks (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc`, the default: plaintext or TLS (system roots).
    Grpc,
    /// `http/protobuf`: plaintext HTTP/1.1 POSTs, e.g. to a collector's port 4318.
    HttpProtobuf,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        };
        write!(f, "{} ({protocol})", self.url)
    }
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

/// The process environment, or a stand-in for it in tests.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads a variable, trimmed, treating an empty value as unset.
fn value(env: Env<'_>, name: &str) -> Option<String> {
    env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl OtlpSettings {
    /// Reads the switches from `env`.
    pub fn from_env(env: Env<'_>) -> Result<Self, OtlpError> {
        if value(env, "OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(Self::off());
        }
        let metric_interval = match value(env, "OTEL_METRIC_EXPORT_INTERVAL") {
            Some(ms) => ms.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                OtlpError::Unsupported(format!("OTEL_METRIC_EXPORT_INTERVAL={ms} is not a number of milliseconds"))
            })?,
            None => DEFAULT_METRIC_INTERVAL,
        };
        Ok(Self { traces: endpoint(env, "TRACES")?, metrics: endpoint(env, "METRICS")?, metric_interval })
    }
}

/// The endpoint of one signal (`TRACES` or `METRICS`), by the specification's rules: the
/// signal's own variables win; a common HTTP endpoint gets the signal's path (`/v1/traces`).
fn endpoint(env: Env<'_>, signal: &str) -> Result<Option<Endpoint>, OtlpError> {
    let protocol = protocol(env, signal)?;
    let url = match value(env, &format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")) {
        Some(url) => url,
        None => match (value(env, "OTEL_EXPORTER_OTLP_ENDPOINT"), protocol) {
            (None, _) => return Ok(None),
            (Some(base), Protocol::Grpc) => base,
            (Some(base), Protocol::HttpProtobuf) => {
                format!("{}/v1/{}", base.trim_end_matches('/'), signal.to_ascii_lowercase())
            }
        },
    };
    if protocol == Protocol::HttpProtobuf && !url.starts_with("http://") {
        return Err(OtlpError::Unsupported(format!(
            "{url}: OTLP over HTTP is plaintext (http://) only; use OTEL_EXPORTER_OTLP_PROTOCOL=grpc for TLS"
        )));
    }
    Ok(Some(Endpoint { url, protocol }))
}

fn protocol(env: Env<'_>, signal: &str) -> Result<Protocol, OtlpError> {
    let name = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
    let (name, given) = match value(env, &name) {
        Some(given) => (name, given),
        None => {
            ("OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(), value(env, "OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_default())
        }
    };
    match given.as_str() {
        "" | "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        other => Err(OtlpError::Unsupported(format!(
            "{name}={other} is not supported; use grpc (port 4317) or http/protobuf (port 4318)"
        ))),
    }
}

/// The resource describing this process; `OTEL_SERVICE_NAME` wins over the default name.
pub(super) fn resource(env: Env<'_>) -> Resource {
    let builder =
        Resource::builder().with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if env("OTEL_SERVICE_NAME").is_some() { builder.build() } else { builder.with_service_name("checkpointd").build() }
}

/// A tracer provider exporting spans to `endpoint` in batches. Needs a tokio runtime that
/// outlives it (the gRPC channel's task, or the HTTP requests, run there).
pub(super) fn tracer_provider(endpoint: &Endpoint, resource: Resource) -> Result<SdkTracerProvider, OtlpError> {
    let exporter = match endpoint.protocol {
        Protocol::Grpc => SpanExporter::builder().with_tonic().with_endpoint(&endpoint.url).build()?,
        Protocol::HttpProtobuf => {
            SpanExporter::builder().with_http().with_http_client(http_client()?).with_endpoint(&endpoint.url).build()?
        }
    };
    Ok(SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build())
}

/// A reader pushing metrics to `endpoint` every `interval`.
pub(super) fn metric_reader(
    endpoint: &Endpoint,
    interval: Duration,
) -> Result<PeriodicReader<MetricExporter>, OtlpError> {
    let exporter = match endpoint.protocol {
        Protocol::Grpc => MetricExporter::builder().with_tonic().with_endpoint(&endpoint.url).build()?,
        Protocol::HttpProtobuf => MetricExporter::builder()
            .with_http()
            .with_http_client(http_client()?)
            .with_endpoint(&endpoint.url)
            .build()?,
    };
    Ok(PeriodicReader::builder(exporter).with_interval(interval).build())
}

fn http_client() -> Result<RuntimeHttpClient, OtlpError> {
    RuntimeHttpClient::on_current_runtime()
        .ok_or_else(|| OtlpError::Unsupported("OTLP over HTTP must be set up inside the tokio runtime".into()))
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

    fn url(endpoint: &Option<Endpoint>) -> Option<(&str, Protocol)> {
        endpoint.as_ref().map(|e| (e.url.as_str(), e.protocol))
    }

    #[test]
    fn a_common_endpoint_exports_both_signals_and_a_signal_endpoint_only_its_own() {
        let both = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]).expect("valid");
        assert_eq!(url(&both.traces), Some(("http://collector:4317", Protocol::Grpc)));
        assert_eq!(url(&both.metrics), Some(("http://collector:4317", Protocol::Grpc)));
        let traces = settings(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ])
        .expect("valid");
        assert_eq!((url(&traces.traces), traces.metrics), (Some(("http://t:4317", Protocol::Grpc)), None));
        assert_eq!(traces.metric_interval, Duration::from_millis(500));
    }

    #[test]
    fn over_http_a_common_endpoint_gets_each_signals_path_and_a_signal_endpoint_is_kept() {
        let http = settings(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4318/custom"),
        ])
        .expect("valid");
        assert_eq!(url(&http.traces), Some(("http://collector:4318/v1/traces", Protocol::HttpProtobuf)));
        assert_eq!(url(&http.metrics), Some(("http://m:4318/custom", Protocol::HttpProtobuf)));
        let mixed = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
        ])
        .expect("valid");
        assert_eq!(url(&mixed.traces), Some(("http://c:4317", Protocol::Grpc)));
        assert_eq!(url(&mixed.metrics), Some(("http://c:4317/v1/metrics", Protocol::HttpProtobuf)));
    }

    #[test]
    fn the_sdk_switch_turns_everything_off() {
        let off = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_SDK_DISABLED", "true")])
            .expect("valid");
        assert_eq!(off, OtlpSettings::off());
    }

    #[test]
    fn unsupported_protocols_and_https_over_http_are_refused_clearly() {
        let err = settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).expect_err("unsupported");
        assert!(err.to_string().contains("http/protobuf"), "{err}");
        let err = settings(&[
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
        ])
        .expect_err("https over http");
        assert!(err.to_string().contains("grpc"), "{err}");
        assert!(settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).is_ok());
    }
}

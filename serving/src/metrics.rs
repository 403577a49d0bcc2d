//! The series of `/metrics`, kept and written by `prometheus-client` in the
//! Prometheus text format (0.0.4), the format every scraper reads.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answer {
    /// The route template, not the raw path: one series per route.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

/// Seconds, added up as an `f64` kept in the bits of an `AtomicU64`.
type Seconds = Counter<f64, AtomicU64>;

/// What the batch workers of one model did: its series of the registry,
/// shared with [`Metrics`] (a default one is counted nowhere).
#[derive(Debug, Default)]
pub struct BatchStats {
    batches: Counter,
    images: Counter,
    inference: Seconds,
}

impl BatchStats {
    /// One batch of `images` that ran for `took`.
    pub fn record(&self, images: usize, took: Duration) {
        self.batches.inc();
        self.images.inc_by(images as u64);
        self.inference.inc_by(took.as_secs_f64());
    }
}

/// The server's series.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Answer, Counter>,
    latency: Family<Route, Histogram, fn() -> Histogram>,
    batches: Family<ModelLabel, Counter>,
    images: Family<ModelLabel, Counter>,
    inference: Family<ModelLabel, Seconds>,
    /// Requests holding a slot of the concurrency cap.
    pub in_flight: Gauge,
    /// Requests waiting for a slot.
    pub queued: Gauge,
    /// Images decoding or waiting for a decode permit.
    pub decoding: Gauge,
    /// Images given up because their request was gone: stopped while
    /// decoding, or never started.
    pub decodes_stopped: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let metrics = Metrics {
            registry: Registry::with_prefix("semiclass"),
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(BUCKETS)),
            batches: Family::default(),
            images: Family::default(),
            inference: Family::default(),
            in_flight: Gauge::default(),
            queued: Gauge::default(),
            decoding: Gauge::default(),
            decodes_stopped: Counter::default(),
        };
        metrics.registered()
    }
}

impl Metrics {
    /// Names every series (the crate adds the prefix, `_total` to counters,
    /// the unit and the final period of the help).
    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "http_requests",
            "HTTP answers by route and status",
            self.requests.clone(),
        );
        let latency = self.latency.clone();
        r.register_with_unit(
            "http_request_duration",
            "Time to answer, by route",
            Unit::Seconds,
            latency,
        );
        r.register(
            "requests_in_flight",
            "Prediction requests holding a slot of the concurrency cap",
            self.in_flight.clone(),
        );
        r.register(
            "requests_queued",
            "Prediction requests waiting for a slot",
            self.queued.clone(),
        );
        r.register(
            "images_decoding",
            "Images decoding or waiting for a decode permit",
            self.decoding.clone(),
        );
        r.register(
            "decodes_stopped",
            "Images whose decode was stopped or never started because their request was gone",
            self.decodes_stopped.clone(),
        );
        r.register("batches", "Batches run", self.batches.clone());
        r.register(
            "images",
            "Images run through the model",
            self.images.clone(),
        );
        r.register_with_unit(
            "inference",
            "Time spent in ONNX Runtime",
            Unit::Seconds,
            self.inference.clone(),
        );
        self
    }

    /// One answer on `route` (the route template, not the raw path).
    pub fn record(&self, route: &str, status: u16, took: Duration) {
        let route = route.to_string();
        self.latency
            .get_or_create(&Route {
                route: route.clone(),
            })
            .observe(took.as_secs_f64());
        self.requests.get_or_create(&Answer { route, status }).inc();
    }

    /// The counters of model `id`'s batch workers, at zero until it runs
    /// (so a scrape lists every served model).
    pub fn batch_stats(&self, id: &str) -> BatchStats {
        let label = ModelLabel {
            model: id.to_string(),
        };
        BatchStats {
            batches: self.batches.get_or_create_owned(&label),
            images: self.images.get_or_create_owned(&label),
            inference: self.inference.get_or_create_owned(&label),
        }
    }

    /// Every series in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a `String` cannot fail.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_as_prometheus_text() {
        let metrics = Metrics::default();
        metrics.record("/v1/models", 200, Duration::from_millis(3));
        metrics.record("/v1/models", 200, Duration::from_millis(30));
        metrics.record("/v1/models", 401, Duration::from_micros(10));
        let stats = metrics.batch_stats("m\"1");
        stats.record(3, Duration::from_millis(5));
        let text = metrics.render();
        assert!(
            text.contains("semiclass_http_requests_total{route=\"/v1/models\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("semiclass_http_requests_total{route=\"/v1/models\",status=\"401\"} 1")
        );
        let le = "semiclass_http_request_duration_seconds_bucket{route=\"/v1/models\",le=";
        assert!(text.contains(&format!("{le}\"0.005\"}} 2")), "{text}");
        assert!(text.contains(&format!("{le}\"+Inf\"}} 3")), "{text}");
        assert!(
            text.contains("semiclass_images_total{model=\"m\\\"1\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("semiclass_batches_total{model=\"m\\\"1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("semiclass_inference_seconds_total{model=\"m\\\"1\"} 0.005"),
            "{text}"
        );
        assert!(text.contains("# TYPE semiclass_requests_in_flight gauge\n"));
    }
}

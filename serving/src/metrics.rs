//! Counters for `/metrics`, written in the Prometheus text format by hand
//! (a handful of series needs no client library).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// What the batch workers of one model did.
#[derive(Debug, Default)]
pub struct BatchStats {
    batches: AtomicU64,
    images: AtomicU64,
    run_micros: AtomicU64,
}

impl BatchStats {
    /// One batch of `images` that ran for `took`.
    pub fn record(&self, images: usize, took: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.images.fetch_add(images as u64, Ordering::Relaxed);
        self.run_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, status) -> answers.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// route -> latency.
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Requests holding a slot of the concurrency cap.
    pub in_flight: AtomicI64,
    /// Requests waiting for a slot.
    pub queued: AtomicI64,
    /// Images decoding or waiting for a decode permit.
    pub decoding: AtomicI64,
    /// Images given up because their request was gone: stopped while
    /// decoding, or never started.
    pub decodes_stopped: AtomicU64,
}

impl Metrics {
    /// One answer on `route` (the route template, not the raw path).
    pub fn record(&self, route: &str, status: u16, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((route.to_string(), status))
            .or_default() += 1;
        let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let histogram = latency.entry(route.to_string()).or_default();
        let seconds = took.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// The Prometheus text of every series; `models` are (id, stats).
    pub fn render(&self, models: &[(&str, &BatchStats)]) -> String {
        let mut out = String::new();
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        let gauge = |out: &mut String, name: &str, help: &str, value: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "semiclass_requests_in_flight",
            "Prediction requests holding a slot of the concurrency cap.",
            self.in_flight.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "semiclass_requests_queued",
            "Prediction requests waiting for a slot.",
            self.queued.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "semiclass_images_decoding",
            "Images decoding or waiting for a decode permit.",
            self.decoding.load(Ordering::Relaxed),
        );
        let name = "semiclass_decodes_stopped_total";
        let _ = writeln!(
            out,
            "# HELP {name} Images whose decode was stopped or never started because their request was gone.\n# TYPE {name} counter\n{name} {}",
            self.decodes_stopped.load(Ordering::Relaxed)
        );
        render_batches(&mut out, models);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let name = "semiclass_http_requests_total";
        let _ = writeln!(out, "# HELP {name} HTTP answers by route and status.");
        let _ = writeln!(out, "# TYPE {name} counter");
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((route, status), n) in requests.iter() {
            let route = escape(route);
            let _ = writeln!(out, "{name}{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
    }

    fn render_latency(&self, out: &mut String) {
        let name = "semiclass_http_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Time to answer, by route.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        for (route, h) in latency.iter() {
            let route = escape(route);
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", h.count);
        }
    }
}

/// A counter of [`BatchStats`]: name, help, value.
type BatchSeries = (&'static str, &'static str, fn(&BatchStats) -> f64);

fn render_batches(out: &mut String, models: &[(&str, &BatchStats)]) {
    let series: [BatchSeries; 3] = [
        ("semiclass_batches_total", "Batches run.", |s| {
            s.batches.load(Ordering::Relaxed) as f64
        }),
        (
            "semiclass_images_total",
            "Images run through the model.",
            |s| s.images.load(Ordering::Relaxed) as f64,
        ),
        (
            "semiclass_inference_seconds_total",
            "Time spent in ONNX Runtime.",
            |s| s.run_micros.load(Ordering::Relaxed) as f64 / 1e6,
        ),
    ];
    for (name, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (id, stats) in models {
            let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", escape(id), value(stats));
        }
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        let stats = BatchStats::default();
        stats.record(3, Duration::from_millis(5));
        let text = metrics.render(&[("m\"1", &stats)]);
        assert!(
            text.contains("semiclass_http_requests_total{route=\"/v1/models\",status=\"200\"} 2")
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
    }
}

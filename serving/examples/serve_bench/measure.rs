//! What one setting measured, and the best of several rounds.

use std::collections::BTreeMap;
use std::time::Duration;

/// Throughput, latency and CPU of one setting.
#[derive(Debug, Default, Clone)]
pub struct Measure {
    pub images_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub statuses: BTreeMap<u16, usize>,
    /// Requests still unanswered at the window's end.
    pub unfinished: usize,
    /// CPU milliseconds the measured side spent per answered image.
    pub cpu_ms_per_image: f64,
    /// The load generator's CPU, in percent of the machine (HTTP sides).
    pub generator_share: Option<f64>,
}

/// Latencies and counts of a window of `took` -> a [`Measure`] (CPU
/// figures: `cpu_seconds` of the side, `generator` seconds of the load
/// generator over `cores`).
pub struct Window {
    pub took: Duration,
    /// Of the answers (200) that arrived in the window.
    pub latencies: Vec<Duration>,
    /// How long each request unanswered at the window's end had waited:
    /// part of the percentiles, not of the throughput.
    pub unfinished: Vec<Duration>,
    pub statuses: BTreeMap<u16, usize>,
    pub cpu_seconds: f64,
    pub generator_seconds: Option<f64>,
}

impl Window {
    pub fn measure(self, cores: usize) -> Measure {
        let mut waits: Vec<Duration> = self
            .latencies
            .iter()
            .chain(&self.unfinished)
            .copied()
            .collect();
        waits.sort();
        let at = |q: f64| {
            waits
                .get(((waits.len() as f64 - 1.0) * q).round() as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let images = self.latencies.len().max(1) as f64;
        let wall = self.took.as_secs_f64();
        Measure {
            images_per_s: self.latencies.len() as f64 / wall,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            cpu_ms_per_image: self.cpu_seconds * 1e3 / images,
            generator_share: self
                .generator_seconds
                .map(|s| 100.0 * s / (wall * cores as f64)),
            statuses: self.statuses,
            unfinished: self.unfinished.len(),
        }
    }
}

/// The best round (highest throughput) of each setting, in the order
/// first measured.
#[derive(Default)]
pub struct Best(pub Vec<(String, Measure)>);

impl Best {
    pub fn keep(&mut self, name: &str, m: Measure) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) if old.images_per_s >= m.images_per_s => {}
            Some((_, old)) => *old = m,
            None => self.0.push((name.to_string(), m)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Measure> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }
}

/// One markdown table row.
pub fn row(name: &str, m: &Measure) {
    let unfinished = (m.unfinished > 0).then(|| format!("unfinished at the end: {}", m.unfinished));
    let answers: Vec<String> = unfinished
        .into_iter()
        .chain(m.statuses.iter().map(|(s, n)| format!("{s}: {n}")))
        .collect();
    let generator = m
        .generator_share
        .map_or("-".to_string(), |g| format!("{g:.0}%"));
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {:.2} | {generator} | {} |",
        m.images_per_s,
        m.p50_ms,
        m.p99_ms,
        m.cpu_ms_per_image,
        answers.join(", ")
    );
}

/// The table's head.
pub fn head() {
    println!(
        "| setting | images/s | p50 ms | p99 ms | side's CPU ms per image | load generator CPU | answers |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
}

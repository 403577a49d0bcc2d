//! Side (a): the work of a request without HTTP, as an application that
//! links the crates would do it. Each of `clients` threads loops over the
//! same JPEG bytes: decode and preprocess with the shared `preprocess`
//! crate, run one of the server's ONNX Runtime sessions (the same number,
//! the same threads), take the top 5. And, for reference, ONNX Runtime
//! alone on one preprocessed tensor: the inference cost per image that
//! both servers pay.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use semiclass_manifest::PreprocessSpec;
use semiclass_preprocess::{DecodeLimits, preprocess_bytes};
use semiclass_serve::engine::{Backend, OrtBackend};
use semiclass_serve::predict::top_k;

use crate::cpu;
use crate::measure::{Measure, Window};

/// Sessions shared by the loop's threads, like the server's workers.
pub struct DirectLoop {
    image: Vec<u8>,
    spec: PreprocessSpec,
    names: Vec<String>,
    free: Mutex<Vec<OrtBackend>>,
    freed: Condvar,
    cores: usize,
}

impl DirectLoop {
    /// `sessions` sessions of `model`, each on `threads` intra-op threads.
    pub fn new(
        model: &[u8],
        size: u32,
        image: Vec<u8>,
        (sessions, threads): (usize, usize),
        cores: usize,
    ) -> Result<DirectLoop> {
        let side = size as usize;
        let free = (0..sessions)
            .map(|_| OrtBackend::new(model, threads, ("input", "logits"), [3, side, side]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DirectLoop {
            image,
            spec: imagenet_spec(size),
            names: (0..1000).map(|i| format!("class {i}")).collect(),
            free: Mutex::new(free),
            freed: Condvar::new(),
            cores,
        })
    }

    /// `clients` threads looping for `seconds` after one second of warm-up.
    pub fn run(&self, clients: usize, seconds: f64) -> Result<Measure> {
        let warmup = Instant::now() + Duration::from_secs(1);
        let deadline = warmup + Duration::from_secs_f64(seconds);
        let (latencies, cpu_seconds) = std::thread::scope(|scope| {
            let loops: Vec<_> = (0..clients)
                .map(|_| scope.spawn(|| self.client(warmup, deadline)))
                .collect();
            std::thread::sleep(warmup.saturating_duration_since(Instant::now()));
            let cpu_at_warmup = cpu::own_seconds();
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            let cpu_seconds = cpu::own_seconds() - cpu_at_warmup;
            let mut latencies = Vec::new();
            for one in loops {
                latencies.extend(one.join().expect("a loop panicked")?);
            }
            anyhow::Ok((latencies, cpu_seconds))
        })?;
        let images = latencies.len();
        Ok(Window {
            took: deadline - warmup,
            latencies,
            unfinished: Vec::new(),
            statuses: [(200, images)].into(),
            cpu_seconds,
            generator_seconds: None,
        }
        .measure(self.cores))
    }

    fn client(&self, warmup: Instant, deadline: Instant) -> Result<Vec<Duration>> {
        let mut latencies = Vec::new();
        loop {
            let started = Instant::now();
            if started >= deadline {
                return Ok(latencies);
            }
            let tensor = preprocess_bytes(&self.image, DecodeLimits::default(), &self.spec)?;
            let logits = self.infer(tensor.data)?;
            std::hint::black_box(top_k(&logits, 5, &self.names));
            let finished = Instant::now();
            if started >= warmup && finished <= deadline {
                latencies.push(finished - started);
            }
        }
    }

    /// Logits of one image on the first free session.
    fn infer(&self, input: Vec<f32>) -> Result<Vec<f32>> {
        let mut backend = {
            let mut free = self.free.lock().unwrap();
            loop {
                match free.pop() {
                    Some(backend) => break backend,
                    None => free = self.freed.wait(free).unwrap(),
                }
            }
        };
        let logits = backend.run(input, 1);
        self.free.lock().unwrap().push(backend);
        self.freed.notify_one();
        logits.map_err(anyhow::Error::msg).context("inference")
    }
}

/// ONNX Runtime alone: `sessions` sessions looping in parallel, each on
/// `threads` intra-op threads, batch 1, on one preprocessed tensor, for
/// `seconds` after a short warm-up. Two sessions on two cores cost more CPU
/// per image than one alone (they share caches and memory bandwidth), so a
/// side's cost outside inference is measured against the layout it runs.
pub fn ort_alone(
    model: &[u8],
    size: u32,
    image: &[u8],
    (sessions, threads): (usize, usize),
    seconds: f64,
) -> Result<Measure> {
    let side = size as usize;
    let tensor = preprocess_bytes(image, DecodeLimits::default(), &imagenet_spec(size))?.data;
    let mut backends = (0..sessions)
        .map(|_| OrtBackend::new(model, threads, ("input", "logits"), [3, side, side]))
        .collect::<Result<Vec<_>, _>>()?;
    for backend in &mut backends {
        for _ in 0..10 {
            backend.run(tensor.clone(), 1).map_err(anyhow::Error::msg)?;
        }
    }
    let (cpu_at_start, started) = (cpu::own_seconds(), Instant::now());
    let latencies = std::thread::scope(|scope| {
        let loops: Vec<_> = backends
            .iter_mut()
            .map(|backend| {
                let tensor = &tensor;
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    while started.elapsed().as_secs_f64() < seconds {
                        let t = Instant::now();
                        backend.run(tensor.clone(), 1).map_err(anyhow::Error::msg)?;
                        latencies.push(t.elapsed());
                    }
                    anyhow::Ok(latencies)
                })
            })
            .collect();
        let mut all = Vec::new();
        for one in loops {
            all.extend(one.join().expect("a loop panicked")?);
        }
        anyhow::Ok(all)
    })?;
    let images = latencies.len();
    Ok(Window {
        took: started.elapsed(),
        latencies,
        unfinished: Vec::new(),
        statuses: [(200, images)].into(),
        cpu_seconds: cpu::own_seconds() - cpu_at_start,
        generator_seconds: None,
    }
    .measure(1))
}

/// timm's evaluation preprocessing with ImageNet statistics, as the bench
/// package's manifest says.
pub fn imagenet_spec(size: u32) -> PreprocessSpec {
    PreprocessSpec::for_input(size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
}

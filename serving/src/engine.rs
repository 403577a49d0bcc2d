//! Inference: per model, a small pool of ONNX Runtime sessions fed by a
//! dynamic micro-batcher (and a wide session for quiet moments, see
//! [`Lanes`]). Requests queue single images; an idle worker
//! takes what is queued (up to the batch size that has been cheapest per
//! image so far, at most `max_batch`: see [`crate::batch_size`]) and runs
//! them as one batch while the next worker collects the next batch. It
//! waits for more (at most `max_wait`) only while the batch may grow and
//! images are announced, i.e. being decoded and about to be queued, so a
//! lone request never waits for company that is not coming, a model that
//! batching does not speed up never waits, and under load batches fill up
//! where they pay. While another worker is idle a worker takes one image:
//! the next one runs beside it, on the idle session.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::Tensor;
use semiclass_onnxruntime::device::{self, Device, DeviceError, Placement};
use tokio::sync::oneshot;

use crate::batch_size::BatchSizer;
use crate::metrics::BatchStats;

/// How batches are formed and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most images in one run.
    pub max_batch: usize,
    /// Longest a batch waits for more images once it has one.
    pub max_wait: Duration,
    /// Sessions (and worker threads) per model.
    pub sessions: usize,
    /// ONNX Runtime intra-op threads per session.
    pub threads: usize,
}

/// Why inference failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: cannot load ONNX Runtime: {reason}; give --onnxruntime or ORT_DYLIB_PATH", path = path.display())]
    Runtime {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("model: {0}")]
    Model(String),
    /// A CUDA package whose GPU cannot be used (the whole explanation).
    #[error("{0}")]
    Device(String),
    #[error("inference failed: {0}")]
    Run(String),
    #[error("the inference workers stopped")]
    Stopped,
}

/// Runs one batch: `input` holds `batch` samples back to back; the answer
/// holds `batch` rows of logits back to back.
pub trait Backend: Send + 'static {
    fn run(&mut self, input: Vec<f32>, batch: usize) -> Result<Vec<f32>, String>;
}

/// ONNX Runtime's session option that stops its pool threads spinning when
/// the last concurrent run returns (they spin again at the next run).
const FORCE_SPINNING_STOP: &str = "session.force_spinning_stop";

/// Loads ONNX Runtime from `library`, once per process (later calls reuse
/// the first library: `semiclass_onnxruntime`).
pub fn init_runtime(library: &Path) -> Result<(), EngineError> {
    semiclass_onnxruntime::environment(library)
        .map(|_| ())
        .map_err(|e| EngineError::Runtime {
            path: e.path,
            reason: e.reason,
        })
}

/// One ONNX Runtime session of a model with an NCHW float input.
pub struct OrtBackend {
    session: Session,
    input_name: String,
    output_name: String,
    /// `[3, height, width]` of one sample.
    sample_shape: [usize; 3],
}

impl OrtBackend {
    /// A session of the ONNX `model` running on `threads` intra-op threads,
    /// on the CPU.
    pub fn new(
        model: &[u8],
        threads: usize,
        io_names: (&str, &str),
        sample_shape: [usize; 3],
    ) -> Result<OrtBackend, EngineError> {
        let cpu = Placement {
            cuda: None,
            allow_cpu_fallback: false,
        };
        Ok(Self::placed(model, threads, io_names, sample_shape, cpu)?.0)
    }

    /// [`OrtBackend::new`] on the device `placement` asks for (a CUDA
    /// package's GPU: `semiclass_onnxruntime::device`); says where it runs.
    pub fn placed(
        model: &[u8],
        threads: usize,
        io_names: (&str, &str),
        sample_shape: [usize; 3],
        placement: Placement,
    ) -> Result<(OrtBackend, Device), EngineError> {
        let Some(environment) = semiclass_onnxruntime::loaded() else {
            return Err(EngineError::Model("ONNX Runtime is not loaded".into()));
        };
        // ONNX Runtime's pool threads spin between the operators of a run,
        // which keeps them fast, and by default for tens of ms after it too:
        // 43 ms of CPU after each run on 2 threads, a whole core while a
        // wide session answers requests one after another (the no_inference
        // bench: 4.1 of 5 s). A server's decoding and other sessions need
        // that core, so the spinning stops when a run returns.
        let configure = |builder: SessionBuilder| -> ort::Result<SessionBuilder> {
            Ok(builder
                .with_optimization_level(GraphOptimizationLevel::Level3)?
                .with_intra_threads(threads)?
                .with_inter_threads(1)?
                .with_config_entry(FORCE_SPINNING_STOP, "1")?)
        };
        let (session, device) =
            device::commit(&environment, configure, model, placement).map_err(|e| match e {
                DeviceError::Session(reason) => EngineError::Model(reason),
                no_gpu @ DeviceError::NoGpu { .. } => EngineError::Device(no_gpu.to_string()),
            })?;
        let (input_name, output_name) = (io_names.0.to_string(), io_names.1.to_string());
        let has = |names: Vec<&str>, name: &str| names.contains(&name);
        if !has(
            session.inputs().iter().map(|i| i.name()).collect(),
            &input_name,
        ) || !has(
            session.outputs().iter().map(|o| o.name()).collect(),
            &output_name,
        ) {
            return Err(EngineError::Model(format!(
                "the graph has no input {input_name:?} or no output {output_name:?} as the manifest says"
            )));
        }
        let backend = OrtBackend {
            session,
            input_name,
            output_name,
            sample_shape,
        };
        Ok((backend, device))
    }
}

impl Backend for OrtBackend {
    fn run(&mut self, input: Vec<f32>, batch: usize) -> Result<Vec<f32>, String> {
        let [c, h, w] = self.sample_shape;
        let tensor = Tensor::from_array(([batch, c, h, w], input)).map_err(|e| e.to_string())?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| e.to_string())?;
        let (_, logits) = outputs[self.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| e.to_string())?;
        Ok(logits.to_vec())
    }
}

/// The sessions of one model. Under load, `narrow` sessions (one per
/// worker, few threads each) run batches side by side: on a CPU that beats
/// one session with all the threads. But a lone request on a narrow session
/// leaves the other cores idle (hgnetv2_b4 on 2 cores: p99 128 ms on one
/// thread against 57 ms for a Python server's 2-thread session), so when a
/// batch would run with no other batch running, it runs on `wide`, a
/// session with every inference thread, if the model has one.
pub struct Lanes {
    pub narrow: Vec<Box<dyn Backend>>,
    pub wide: Option<Box<dyn Backend>>,
}

impl Lanes {
    /// Narrow sessions only.
    pub fn narrow(backends: Vec<Box<dyn Backend>>) -> Lanes {
        Lanes {
            narrow: backends,
            wide: None,
        }
    }
}

/// Where the logits of a queued image arrive.
pub type Answer = oneshot::Receiver<Result<Vec<f32>, EngineError>>;

struct Job {
    input: Vec<f32>,
    reply: oneshot::Sender<Result<Vec<f32>, EngineError>>,
}

/// The queue in front of a model's sessions.
pub struct Batcher {
    queue: mpsc::Sender<Job>,
    classes: usize,
    incoming: Arc<AtomicUsize>,
}

/// An image on its way to the queue (see [`Batcher::announce`]); dropping
/// it withdraws the announcement.
#[derive(Debug)]
pub struct Announcement(Arc<AtomicUsize>);

impl Drop for Announcement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Batcher {
    /// Starts one worker thread per narrow backend. Each answer has
    /// `classes` values per image.
    pub fn start(
        lanes: Lanes,
        settings: BatchSettings,
        classes: usize,
        stats: Arc<BatchStats>,
    ) -> Batcher {
        let (queue, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let incoming = Arc::new(AtomicUsize::new(0));
        let sizer = Arc::new(Mutex::new(BatchSizer::new(settings.max_batch)));
        let running = Arc::new(AtomicUsize::new(0));
        let cores = Arc::new(RwLock::new(()));
        let wide = lanes.wide.map(|backend| Arc::new(Mutex::new(backend)));
        for (i, backend) in lanes.narrow.into_iter().enumerate() {
            let collector = Collector {
                rx: rx.clone(),
                incoming: incoming.clone(),
                sizer: sizer.clone(),
                settings,
                running: running.clone(),
                cores: cores.clone(),
                wide: wide.clone(),
            };
            let stats = stats.clone();
            thread::Builder::new()
                .name(format!("infer-{i}"))
                .spawn(move || worker(&collector, backend, classes, &stats))
                .expect("the system can start a thread");
        }
        Batcher {
            queue,
            classes,
            incoming,
        }
    }

    /// Says an image will be submitted soon (it is being decoded), so that
    /// a forming batch waits for it.
    pub fn announce(&self) -> Announcement {
        self.incoming.fetch_add(1, Ordering::AcqRel);
        Announcement(self.incoming.clone())
    }

    /// Queues one preprocessed image; the receiver gets its logits.
    /// Dropping the receiver withdraws the image if it has not run yet.
    pub fn submit(&self, input: Vec<f32>) -> Result<Answer, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { input, reply })
            .map_err(|_| EngineError::Stopped)?;
        Ok(answer)
    }

    /// The logits of one preprocessed image.
    pub async fn infer(&self, input: Vec<f32>) -> Result<Vec<f32>, EngineError> {
        self.submit(input)?
            .await
            .map_err(|_| EngineError::Stopped)?
    }

    /// Logits per image.
    pub fn classes(&self) -> usize {
        self.classes
    }
}

/// What a worker collects batches from.
struct Collector {
    rx: Arc<Mutex<Receiver<Job>>>,
    incoming: Arc<AtomicUsize>,
    /// Shared by the model's workers: what their batches cost.
    sizer: Arc<Mutex<BatchSizer>>,
    settings: BatchSettings,
    /// Batches running now, over the model's workers.
    running: Arc<AtomicUsize>,
    /// The inference threads: a narrow run holds a read guard, a wide run
    /// the write guard. A wide run uses every core, so a narrow batch that
    /// starts meanwhile waits for it rather than run beside it: three busy
    /// threads on two cores slow both runs, and ONNX Runtime's threads
    /// spin-wait for each other between operators, which a preempted
    /// thread turns into the tail latency of both.
    cores: Arc<RwLock<()>>,
    /// The session with every inference thread, for a batch that runs alone.
    wide: Option<Arc<Mutex<Box<dyn Backend>>>>,
}

/// The wide session, and every core for it.
type WideRun<'a> = (RwLockWriteGuard<'a, ()>, MutexGuard<'a, Box<dyn Backend>>);

fn worker(
    collector: &Collector,
    mut backend: Box<dyn Backend>,
    classes: usize,
    stats: &BatchStats,
) {
    loop {
        // Holding the lock while collecting makes this worker the only
        // collector; the others are running their batches meanwhile.
        let jobs = {
            let rx = collector.rx.lock().unwrap_or_else(|e| e.into_inner());
            match collector.collect(&rx) {
                Some(jobs) => jobs,
                None => return,
            }
        };
        // A caller that gave up (timeout, disconnect) needs no answer.
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
        if jobs.is_empty() {
            continue;
        }
        let alone = collector.running.fetch_add(1, Ordering::AcqRel) == 0;
        let wide = if alone { collector.wide_run() } else { None };
        let result = match wide {
            Some((_cores, mut wide)) => run_batch(wide.as_mut(), &jobs, stats).0,
            None => {
                let cores = collector.cores.read();
                let _cores = cores.unwrap_or_else(|e| e.into_inner());
                let (result, took) = run_batch(backend.as_mut(), &jobs, stats);
                // Only narrow runs teach the sizer: batching matters under
                // load, and under load batches run narrow.
                let mut sizer = collector.sizer.lock().unwrap_or_else(|e| e.into_inner());
                sizer.record(jobs.len(), took);
                result
            }
        };
        // Done (and the wide session free) before anyone hears back: a
        // caller that sends its next image at once must find no batch
        // running, or a lone request would run narrow.
        collector.running.fetch_sub(1, Ordering::AcqRel);
        answer(jobs, result, classes);
    }
}

/// How often a waiting collector looks whether announced images remain.
const POLL: Duration = Duration::from_micros(250);

impl Collector {
    /// The wide session and every core, if the model has a wide session
    /// and no narrow batch is running.
    fn wide_run(&self) -> Option<WideRun<'_>> {
        let wide = self.wide.as_ref()?;
        let cores = self.cores.try_write().ok()?;
        Some((cores, wide.try_lock().ok()?))
    }

    /// The next batch: one job (blocking), what is already queued, then
    /// announced images arriving within `max_wait`, up to the sizer's
    /// limit. `None` once the queue is closed.
    fn collect(&self, rx: &Receiver<Job>) -> Option<Vec<Job>> {
        let mut jobs = vec![rx.recv().ok()?];
        // Another worker idle: the next image runs beside this one on its
        // own session, sooner than in a batch with it (a batch of 2 on one
        // thread takes nearly twice as long, and a core would sit idle).
        if self.running.load(Ordering::Acquire) + 1 < self.settings.sessions {
            return Some(jobs);
        }
        let limit = self.sizer.lock().unwrap_or_else(|e| e.into_inner()).limit();
        let deadline = Instant::now() + self.settings.max_wait;
        while jobs.len() < limit.most {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let worth_waiting = jobs.len() < limit.wait_for;
                    if !worth_waiting
                        || left.is_zero()
                        || self.incoming.load(Ordering::Acquire) == 0
                    {
                        break;
                    }
                    match rx.recv_timeout(left.min(POLL)) {
                        Ok(job) => jobs.push(job),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
        }
        Some(jobs)
    }
}

/// Runs `jobs` as one batch: the logits, and how long it ran.
fn run_batch(
    backend: &mut dyn Backend,
    jobs: &[Job],
    stats: &BatchStats,
) -> (Result<Vec<f32>, String>, Duration) {
    let n = jobs.len();
    let mut input = Vec::with_capacity(n * jobs[0].input.len());
    for job in jobs {
        input.extend_from_slice(&job.input);
    }
    let started = Instant::now();
    let result = backend.run(input, n);
    let took = started.elapsed();
    stats.record(n, took);
    (result, took)
}

/// Sends each job its row of `result`, or the error.
fn answer(jobs: Vec<Job>, result: Result<Vec<f32>, String>, classes: usize) {
    let n = jobs.len();
    match result {
        Ok(logits) if logits.len() == n * classes => {
            for (job, row) in jobs.into_iter().zip(logits.chunks(classes)) {
                let _ = job.reply.send(Ok(row.to_vec()));
            }
        }
        Ok(logits) => {
            let err = EngineError::Run(format!(
                "the model gave {} values for {n} images of {classes} classes",
                logits.len()
            ));
            jobs.into_iter()
                .for_each(|job| drop(job.reply.send(Err(err.clone()))));
        }
        Err(reason) => {
            let err = EngineError::Run(reason);
            jobs.into_iter()
                .for_each(|job| drop(job.reply.send(Err(err.clone()))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums each sample into every class, and records the batch sizes.
    struct Summer {
        sizes: Arc<Mutex<Vec<usize>>>,
        delay: Duration,
    }

    impl Backend for Summer {
        fn run(&mut self, input: Vec<f32>, batch: usize) -> Result<Vec<f32>, String> {
            thread::sleep(self.delay);
            self.sizes.lock().unwrap().push(batch);
            let per = input.len() / batch;
            Ok(input
                .chunks(per)
                .flat_map(|s| [s.iter().sum(), -1.0])
                .collect())
        }
    }

    fn batcher(sessions: usize, max_wait_ms: u64) -> (Batcher, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let backends = (0..sessions)
            .map(|_| {
                Box::new(Summer {
                    sizes: sizes.clone(),
                    delay: Duration::from_millis(20),
                }) as Box<dyn Backend>
            })
            .collect();
        let settings = BatchSettings {
            max_batch: 4,
            max_wait: Duration::from_millis(max_wait_ms),
            sessions,
            threads: 1,
        };
        let stats = Arc::new(BatchStats::default());
        (
            Batcher::start(Lanes::narrow(backends), settings, 2, stats),
            sizes,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_get_their_own_rows() {
        let (batcher, sizes) = batcher(1, 5);
        let batcher = Arc::new(batcher);
        // Announced before any is queued, as the server does while decoding.
        let announced: Vec<_> = (0..10).map(|_| batcher.announce()).collect();
        let tasks: Vec<_> = announced
            .into_iter()
            .enumerate()
            .map(|(i, announcement)| {
                let batcher = batcher.clone();
                tokio::spawn(async move {
                    let answer = batcher.submit(vec![i as f32, 1.0]);
                    drop(announcement);
                    answer.unwrap().await.unwrap()
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap().unwrap(), vec![i as f32 + 1.0, -1.0]);
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 10);
        assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
        assert!(sizes.len() < 10, "no batching happened: {sizes:?}");
    }

    /// Costs 5 ms an image alone, and per image as many times more as the
    /// batch holds: a small model on a CPU, exaggerated so that sleeping
    /// longer than asked on a busy machine does not hide it.
    struct CpuLike(Arc<Mutex<Vec<usize>>>);

    impl Backend for CpuLike {
        fn run(&mut self, input: Vec<f32>, batch: usize) -> Result<Vec<f32>, String> {
            let per_image = 5.0 * batch as f64;
            thread::sleep(Duration::from_secs_f64(per_image * batch as f64 / 1e3));
            self.0.lock().unwrap().push(batch);
            Ok(input.iter().map(|&x| x * 2.0).collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn where_batches_cost_more_per_image_images_run_one_by_one_without_waiting() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let settings = BatchSettings {
            max_batch: 8,
            max_wait: Duration::from_millis(300),
            sessions: 1,
            threads: 1,
        };
        let stats = Arc::new(BatchStats::default());
        let backend = Box::new(CpuLike(sizes.clone())) as Box<dyn Backend>;
        let batcher = Batcher::start(Lanes::narrow(vec![backend]), settings, 1, stats);
        // More images queued at once than a batch could take.
        let answers: Vec<_> = (0..60)
            .map(|i| batcher.submit(vec![i as f32]).unwrap())
            .collect();
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.await.unwrap().unwrap(), vec![2.0 * i as f32]);
        }
        let sizes = sizes.lock().unwrap().clone();
        // Pairs tried and found dearer per image: single images but for a
        // retrial now and then.
        let tail = &sizes[sizes.len() / 2..];
        let batched = tail.iter().filter(|&&n| n > 1).count();
        assert!(batched * 4 <= tail.len(), "{sizes:?}");
        // Now images are announced (being decoded) all the time, as under
        // load: a batch that would not be cheaper does not wait for them.
        let _announced: Vec<_> = (0..8).map(|_| batcher.announce()).collect();
        for i in 0..20 {
            let started = Instant::now();
            batcher.infer(vec![i as f32]).await.unwrap();
            let took = started.elapsed();
            assert!(took < Duration::from_millis(150), "waited {took:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn while_a_session_is_idle_images_run_side_by_side_not_batched() {
        let (batcher, sizes) = batcher(2, 5);
        // The sizer has measured one image; its next batch may hold two
        // (a batch costs the same 20 ms here at any size).
        batcher.infer(vec![0.0]).await.unwrap();
        let answers: Vec<_> = (0..2)
            .map(|i| batcher.submit(vec![i as f32]).unwrap())
            .collect();
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1, 1]);
    }

    #[tokio::test]
    async fn a_lone_request_does_not_wait_for_company() {
        let (batcher, sizes) = batcher(2, 10_000);
        let started = Instant::now();
        assert_eq!(batcher.infer(vec![2.0]).await.unwrap(), vec![2.0, -1.0]);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for max_wait"
        );
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    /// Says which lane ran each batch.
    struct Tagged {
        lane: &'static str,
        log: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Backend for Tagged {
        fn run(&mut self, input: Vec<f32>, _batch: usize) -> Result<Vec<f32>, String> {
            thread::sleep(Duration::from_millis(10));
            self.log.lock().unwrap().push(self.lane);
            Ok(input)
        }
    }

    /// Two narrow lanes (and `lanes`' wide one) running one image a batch.
    fn one_image_batches(lanes: Lanes) -> Batcher {
        let settings = BatchSettings {
            max_batch: 1,
            max_wait: Duration::ZERO,
            sessions: 2,
            threads: 1,
        };
        Batcher::start(lanes, settings, 1, Arc::new(BatchStats::default()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_alone_runs_wide_and_batches_side_by_side_run_narrow() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let tagged = |lane| {
            Box::new(Tagged {
                lane,
                log: log.clone(),
            }) as Box<dyn Backend>
        };
        let lanes = Lanes {
            narrow: vec![tagged("narrow"), tagged("narrow")],
            wide: Some(tagged("wide")),
        };
        let batcher = one_image_batches(lanes);
        for i in 0..5 {
            assert_eq!(batcher.infer(vec![i as f32]).await.unwrap(), vec![i as f32]);
        }
        assert_eq!(*log.lock().unwrap(), vec!["wide"; 5], "one at a time");
        log.lock().unwrap().clear();
        let answers: Vec<_> = (0..40)
            .map(|i| batcher.submit(vec![i as f32]).unwrap())
            .collect();
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.await.unwrap().unwrap(), vec![i as f32]);
        }
        let log = log.lock().unwrap();
        let narrow = log.iter().filter(|&&lane| lane == "narrow").count();
        // While one batch runs wide the other worker runs narrow; never two wide.
        assert!(narrow >= 10, "{log:?}");
    }

    /// Counts the inference threads busy at once over all lanes.
    struct Occupying {
        threads: usize,
        busy: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        runs: Arc<AtomicUsize>,
    }

    impl Backend for Occupying {
        fn run(&mut self, input: Vec<f32>, _batch: usize) -> Result<Vec<f32>, String> {
            let now = self.busy.fetch_add(self.threads, Ordering::AcqRel) + self.threads;
            self.most.fetch_max(now, Ordering::AcqRel);
            self.runs.fetch_add(1, Ordering::AcqRel);
            thread::sleep(Duration::from_millis(10));
            self.busy.fetch_sub(self.threads, Ordering::AcqRel);
            Ok(input)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_narrow_batch_never_runs_beside_the_wide_session() {
        let (busy, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (wide_runs, narrow_runs) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let lane = |threads, runs: &Arc<AtomicUsize>| {
            Box::new(Occupying {
                threads,
                busy: busy.clone(),
                most: most.clone(),
                runs: runs.clone(),
            }) as Box<dyn Backend>
        };
        let lanes = Lanes {
            narrow: vec![lane(1, &narrow_runs), lane(1, &narrow_runs)],
            wide: Some(lane(2, &wide_runs)),
        };
        let batcher = one_image_batches(lanes);
        // Images 4 ms apart, each run 10 ms: one starts alone (wide), the
        // next arrives while it runs.
        let mut answers = Vec::new();
        for i in 0..30 {
            answers.push(batcher.submit(vec![i as f32]).unwrap());
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        let (wide, narrow) = (
            wide_runs.load(Ordering::Acquire),
            narrow_runs.load(Ordering::Acquire),
        );
        assert!(wide > 0 && narrow > 0, "wide {wide}, narrow {narrow}");
        assert_eq!(
            most.load(Ordering::Acquire),
            2,
            "threads busy at once on 2 cores"
        );
    }

    #[tokio::test]
    async fn a_wrong_output_size_is_an_error_not_a_panic() {
        let stats = Arc::new(BatchStats::default());
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let summer = Summer {
            sizes,
            delay: Duration::ZERO,
        };
        let settings = BatchSettings {
            max_batch: 2,
            max_wait: Duration::ZERO,
            sessions: 1,
            threads: 1,
        };
        let batcher = Batcher::start(Lanes::narrow(vec![Box::new(summer)]), settings, 3, stats);
        let err = batcher.infer(vec![1.0]).await.unwrap_err();
        assert!(err.to_string().contains("2 values for 1 images"), "{err}");
    }
}

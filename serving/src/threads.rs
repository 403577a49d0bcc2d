//! How the server's threads are shared out over the CPUs. Three kinds of
//! work compete for them: ONNX Runtime (most of a request's CPU time),
//! decoding and preprocessing (a JPEG photo costs a fraction of an
//! inference), and the async workers (HTTP, JSON, auth: little). Giving
//! each kind as many threads as there are CPUs, as the defaults of each
//! library do, makes three times more busy threads than CPUs under load;
//! inference then runs preempted and slower. So inference gets the CPUs
//! and the async runtime a quarter. Decoding gets a bounded pool of one
//! thread a CPU: behind a costly model its threads are idle most of the
//! time and take little from inference, while behind a cheap one (the
//! product's own 32 px models, a fraction of a millisecond an image)
//! decoding is the work, and a pool of half the CPUs halved what the server
//! could answer (2 cores, a graph of next to no inference: 772 images/s
//! with 1 decode thread, 1,071 with 2; resnet50 at 0.98x the same-work
//! loop before, 1.03x after).

/// Threads of each kind for a machine of `cores` CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadBudget {
    /// The CPUs shared out.
    pub cores: usize,
    /// ONNX Runtime sessions per model: small models scale better over
    /// sessions side by side than over the threads of one session.
    pub sessions: usize,
    /// Intra-op threads per session.
    pub intra_threads: usize,
    /// Images decoded at once over all requests: one a CPU.
    pub decode_threads: usize,
    /// Async runtime workers.
    pub async_workers: usize,
}

/// Threads of the async runtime's blocking pool beyond the decodes: for
/// the rare short blocking calls (image headers, the issuer's database).
pub const SPARE_BLOCKING_THREADS: usize = 4;

impl ThreadBudget {
    /// The budget for `cores` CPUs (at least one of each kind).
    pub fn for_cores(cores: usize) -> ThreadBudget {
        let cores = cores.max(1);
        let sessions = cores.min(2);
        ThreadBudget {
            cores,
            sessions,
            intra_threads: (cores / sessions).max(1),
            decode_threads: cores,
            async_workers: (cores / 4).max(1),
        }
    }

    /// This machine's budget.
    pub fn here() -> ThreadBudget {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ThreadBudget::for_cores(cores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_and_decoding_get_the_cores_and_the_async_runtime_a_quarter() {
        for cores in [1, 2, 3, 4, 8, 16, 64] {
            let b = ThreadBudget::for_cores(cores);
            let inference = b.sessions * b.intra_threads;
            assert!(inference <= cores.max(1), "{cores}: {b:?}");
            assert!(inference * 2 > cores, "{cores}: idle cores: {b:?}");
            assert_eq!(b.decode_threads, cores, "{b:?}");
            assert!(b.async_workers * 4 <= cores.max(4), "{cores}: {b:?}");
        }
    }

    #[test]
    fn one_or_two_cores() {
        let one = ThreadBudget::for_cores(1);
        assert_eq!((one.sessions, one.intra_threads), (1, 1));
        assert_eq!((one.decode_threads, one.async_workers), (1, 1));
        let two = ThreadBudget::for_cores(2);
        assert_eq!((two.sessions, two.intra_threads), (2, 1));
        assert_eq!((two.decode_threads, two.async_workers), (2, 1));
        let sixteen = ThreadBudget::for_cores(16);
        assert_eq!((sixteen.sessions, sixteen.intra_threads), (2, 8));
        assert_eq!((sixteen.decode_threads, sixteen.async_workers), (16, 4));
    }
}

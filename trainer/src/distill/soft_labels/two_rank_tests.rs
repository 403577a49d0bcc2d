//! The soft-label table computed by two real ranks on loopback against the
//! one a single process computes (`semiclass_distributed::testing` runs rank 1).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use image::RgbImage;
use semiclass_distributed::ProcessGroup;
use semiclass_manifest::PreprocessSpec;
use semiclass_manifest::checkpoint::CheckpointMeta;
use semiclass_models::{Model, ModelOptions};
use tch::{Device, Kind, Tensor};

use super::{SoftLabelJob, SoftLabels, compute_in_chunks};
use crate::data::store::{ImageStore, StoreSpec, Use};
use crate::distill::teacher::Teacher;
use crate::engine::dist::Dist;
use crate::nn::Network;
use semiclass_distributed::testing as two_ranks;

/// Collectives that a rank misses time out after this: the tests fail well
/// within it if the ranks fall out of step.
const TIMEOUT: Duration = Duration::from_secs(20);
/// 22 images in batches of 4, chunks of 8 (one batch per rank per chunk):
/// the last chunk's second batch is short.
const IMAGES: usize = 22;
const BATCH: usize = 4;
const CHUNK: usize = 8;

/// The images and the teacher every job of a test labels with.
struct Fixture {
    dir: tempfile::TempDir,
    store: ImageStore,
    indices: Vec<usize>,
    teacher: Teacher,
}

/// `shift` is added to every weight and buffer of the teacher.
fn fixture(shift: f64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let eval = PreprocessSpec::for_input(32, [0.5; 3], [0.25; 3]);
    let images = (0..IMAGES)
        .map(|i| {
            let path = format!("{i}.png");
            let i = i as u32;
            RgbImage::from_fn(28, 28, |x, y| {
                let v = |c: u32| ((x * 7 + y * 13 + c) * (i + 1) % 256) as u8;
                image::Rgb([v(0), v(40), v(i * 31)])
            })
            .save(dir.path().join(&path))
            .unwrap();
            (path.into(), Use::Train)
        })
        .collect();
    let spec = StoreSpec {
        input_size: 32,
        eval: eval.clone(),
        budget_bytes: 1 << 30,
    };
    let store = ImageStore::load(dir.path(), images, &spec, &|| {}).unwrap();
    let classes: Vec<String> = (0..5).map(|c| format!("c{c}")).collect();
    // Not LCNet: its untrained head answers 0.2 for every class and image.
    tch::manual_seed(0);
    let model = Model::new(
        "mobilenetv3_small_050",
        ModelOptions::new(classes.len(), 32),
    )
    .unwrap();
    let net = Network::new(model, Device::Cpu);
    for (_, t) in net.named_tensors() {
        let _ = tch::no_grad(|| t.shallow_clone().g_add_scalar_(shift));
    }
    let teacher = Teacher {
        net,
        meta: CheckpointMeta::untrained("mobilenetv3_small_050", classes, 32, eval, "test"),
        path: dir.path().join("teacher.safetensors"),
        sha256: "7e".repeat(32),
    };
    Fixture {
        // Images in reverse order: rows are the job's order, not the store's.
        indices: (0..IMAGES).rev().collect(),
        dir,
        store,
        teacher,
    }
}

/// Labels the fixture's images with the cache folder `cache`, over the
/// ranks of `dist` when given.
fn label(
    f: &Fixture,
    cache: &Path,
    dist: Option<&Dist>,
    stop: &AtomicBool,
    on_progress: &dyn Fn(usize, usize),
) -> Option<SoftLabels> {
    let job = SoftLabelJob {
        teacher: &f.teacher,
        store: &f.store,
        indices: &f.indices,
        t: 2.0,
        topk: 3,
        flip: true,
        batch_size: BATCH,
        cache_dir: cache.to_path_buf(),
        stop,
        on_progress,
        dist,
    };
    compute_in_chunks(&job, CHUNK).unwrap()
}

/// Whether two tables hold the same bits (a float compare would pass
/// values that only round alike).
fn same_bits(a: &SoftLabels, b: &SoftLabels) -> bool {
    assert!(
        !a.probs.get(0).equal(&a.probs.get(1)),
        "rows of different images differ: a misplaced row would show"
    );
    let (pa, pb) = (a.probs.view_dtype(Kind::Int), b.probs.view_dtype(Kind::Int));
    pa.equal(&pb) && a.classes.equal(&b.classes) && pa.size() == [IMAGES as i64, 3]
}

/// The sum over ranks of `n`.
fn total_over_ranks(dist: &Dist, n: usize) -> i64 {
    let mut t = Tensor::from_slice(&[n as i64]);
    dist.group.all_reduce_sum(&mut t).unwrap();
    t.int64_value(&[0])
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

fn shares_give_one_process_table(group: ProcessGroup) {
    let dist = Dist::new(group, false);
    // Each rank starts from a teacher of its own: rank 0's is the one used.
    let f = fixture(dist.rank() as f64 / 8.0);
    let cache = f.dir.path().join("cache");
    let no_stop = AtomicBool::new(false);
    let two = label(&f, &cache, Some(&dist), &no_stop, &|_, _| {}).unwrap();
    assert!(!two.reused);
    // Chunks [0,8) [8,16) [16,22): rank 0 takes 4 + 4 + 4, rank 1 4 + 4 + 2.
    assert_eq!(two.labeled_here, [12, 10][dist.rank()]);
    assert_eq!(total_over_ranks(&dist, two.labeled_here), IMAGES as i64);
    let alone = f.dir.path().join("alone");
    let one = label(&f, &alone, None, &no_stop, &|_, _| {}).unwrap();
    assert!(
        same_bits(&two, &one),
        "rank {}: 2 ranks' table differs from 1 process's",
        dist.rank()
    );
    // Rank 0 keeps the cache; the other ranks write nothing.
    assert_eq!(is_empty(&cache), dist.rank() != 0, "{}", cache.display());
    let again = label(&f, &cache, Some(&dist), &no_stop, &|_, _| {}).unwrap();
    assert!(again.reused && again.labeled_here == 0);
    assert!(
        same_bits(&again, &one),
        "rank {}: the cache sent",
        dist.rank()
    );
    // A rank that sees other images makes every rank stop with the reason.
    let mut other = f;
    if dist.rank() == 1 {
        other.indices.pop();
    }
    let job = SoftLabelJob {
        teacher: &other.teacher,
        store: &other.store,
        indices: &other.indices,
        t: 2.0,
        topk: 3,
        flip: true,
        batch_size: BATCH,
        cache_dir: cache.clone(),
        stop: &no_stop,
        on_progress: &|_, _| {},
        dist: Some(&dist),
    };
    let err = compute_in_chunks(&job, CHUNK).err().expect("refused");
    let err = err.to_string();
    assert!(err.contains("rank 1 sees another job than rank 0"), "{err}");
    if dist.rank() == 1 {
        assert!(
            err.contains("rank 1: 21 images, top-3; rank 0: 22 images"),
            "{err}"
        );
    }
}

#[test]
fn two_ranks_label_their_shares_and_assemble_one_process_table() {
    two_ranks::run(
        "distill::soft_labels::two_rank_tests::rank_1_of_shares",
        TIMEOUT,
        shares_give_one_process_table,
    );
}

#[test]
#[ignore = "rank 1 of two_ranks_label_their_shares_and_assemble_one_process_table, which runs it"]
fn rank_1_of_shares() {
    two_ranks::rank_1(TIMEOUT, shares_give_one_process_table);
}

fn a_stop_on_rank_1_is_every_rank_s(group: ProcessGroup) {
    let dist = Dist::new(group, false);
    let f = fixture(0.0);
    let cache = f.dir.path().join("cache");
    let no_stop = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let stop_after_a_chunk = |done: usize, _| {
        if dist.rank() == 1 && done >= CHUNK {
            stop.store(true, Ordering::SeqCst);
        }
    };
    let stopped = label(&f, &cache, Some(&dist), &stop, &stop_after_a_chunk);
    assert!(stopped.is_none(), "rank {}: stopped too", dist.rank());
    // Continued from rank 0's partial file: only the rest is labeled.
    let rest = label(&f, &cache, Some(&dist), &no_stop, &|_, _| {}).unwrap();
    assert!(!rest.reused);
    assert_eq!(
        total_over_ranks(&dist, rest.labeled_here),
        (IMAGES - CHUNK) as i64
    );
    let uninterrupted = label(&f, &f.dir.path().join("alone"), None, &no_stop, &|_, _| {});
    assert!(
        same_bits(&rest, &uninterrupted.unwrap()),
        "rank {}",
        dist.rank()
    );
    let partial = std::fs::read_dir(&cache).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .contains("partial")
        })
        .count()
    });
    assert_eq!(partial, 0, "the partial file goes once complete");
}

#[test]
fn a_stop_on_one_rank_stops_both_and_the_partial_file_is_continued() {
    two_ranks::run(
        "distill::soft_labels::two_rank_tests::rank_1_of_stop",
        TIMEOUT,
        a_stop_on_rank_1_is_every_rank_s,
    );
}

#[test]
#[ignore = "rank 1 of a_stop_on_one_rank_stops_both_and_the_partial_file_is_continued, which runs it"]
fn rank_1_of_stop() {
    two_ranks::rank_1(TIMEOUT, a_stop_on_rank_1_is_every_rank_s);
}

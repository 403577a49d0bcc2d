//! Many tensors through few collectives: consecutive tensors of one dtype
//! are flattened into one buffer of at most `BUCKET_BYTES`, reduced, and
//! copied back (PyTorch DDP's gradient buckets, reducer.cpp).

use tch::Tensor;

use crate::DistError;

/// PyTorch DDP's default `bucket_cap_mb` (25).
pub const BUCKET_BYTES: usize = 25 << 20;

/// Runs `op` on each flat bucket of `tensors`, then writes the bucket's
/// values back into the tensors (in place: a gradient stays the same tensor).
pub fn each_bucket(
    tensors: &mut [Tensor],
    mut op: impl FnMut(&mut Tensor) -> Result<(), DistError>,
) -> Result<(), DistError> {
    tch::no_grad(|| {
        for range in buckets(tensors) {
            let parts = &mut tensors[range];
            let views: Vec<Tensor> = parts.iter().map(|t| t.reshape([-1])).collect();
            let mut flat = Tensor::cat(&views, 0);
            op(&mut flat)?;
            let sizes: Vec<i64> = parts.iter().map(|t| t.numel() as i64).collect();
            for (t, chunk) in parts.iter_mut().zip(flat.split_with_sizes(&sizes, 0)) {
                t.copy_(&chunk.view_as(t));
            }
        }
        Ok(())
    })
}

/// Index ranges of consecutive same-dtype tensors within `BUCKET_BYTES`
/// (a tensor larger than a bucket gets one of its own).
fn buckets(tensors: &[Tensor]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, t) in tensors.iter().enumerate() {
        let size = t.numel() * t.kind().elt_size_in_bytes();
        let new_kind = i > start && tensors[start].kind() != t.kind();
        if i > start && (new_kind || bytes + size > BUCKET_BYTES) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < tensors.len() {
        out.push(start..tensors.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn buckets_split_on_size_and_dtype() {
        let big = (BUCKET_BYTES / 4) as i64;
        let ts = [
            Tensor::zeros([big - 10], (Kind::Float, tch::Device::Cpu)),
            Tensor::zeros([10], (Kind::Float, tch::Device::Cpu)),
            Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)),
            Tensor::zeros([3], (Kind::Int64, tch::Device::Cpu)),
            Tensor::zeros([big + 1], (Kind::Int64, tch::Device::Cpu)),
        ];
        assert_eq!(buckets(&ts), vec![0..2, 2..3, 3..4, 4..5]);
    }

    #[test]
    fn a_bucket_round_trip_keeps_shapes_and_writes_back() {
        let mut ts = [
            Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]),
            Tensor::from_slice(&[5.0f32]),
        ];
        let alias = ts[0].shallow_clone();
        each_bucket(&mut ts, |flat| {
            let _ = flat.g_mul_scalar_(10.0);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            Vec::<f32>::try_from(alias.reshape([-1])).unwrap(),
            [10.0, 20.0, 30.0, 40.0]
        );
        assert_eq!(ts[0].size(), [2, 2]);
        assert_eq!(Vec::<f32>::try_from(&ts[1]).unwrap(), [50.0]);
    }
}

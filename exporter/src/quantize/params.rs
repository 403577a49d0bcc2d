//! Scales and zero points: `real = scale * (q - zero_point)`, with ONNX's
//! QuantizeLinear rounding (half to even) and saturation.

/// How activations are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationType {
    /// uint8 over `[min(lo, 0), max(hi, 0)]`: the whole 0..=255 for
    /// post-Relu values, and the type ONNX Runtime's x86 kernels (U8S8)
    /// multiply natively.
    U8Asymmetric,
    /// int8 over `[-a, a]`, `a = max(|lo|, |hi|)`, zero point 0.
    I8Symmetric,
}

/// The parameters of one quantized activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivationParams {
    pub scale: f32,
    /// The zero point, as the stored type's value (`u8` or `i8` widened).
    pub zero_point: i32,
}

/// A scale that is never 0, so that no division makes infinities (a value
/// that was always 0 quantizes to its zero point all the same).
fn safe_scale(span: f32, steps: f32) -> f32 {
    let scale = span / steps;
    if scale > f32::MIN_POSITIVE && scale.is_finite() {
        scale
    } else {
        1.0
    }
}

impl ActivationType {
    /// The parameters that cover `[lo, hi]` (0 always included, so that
    /// zero padding is exact).
    pub fn params(self, (lo, hi): (f32, f32)) -> ActivationParams {
        match self {
            ActivationType::U8Asymmetric => {
                let (lo, hi) = (lo.min(0.0), hi.max(0.0));
                let scale = safe_scale(hi - lo, 255.0);
                let zero_point = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as i32;
                ActivationParams { scale, zero_point }
            }
            ActivationType::I8Symmetric => ActivationParams {
                scale: safe_scale(lo.abs().max(hi.abs()), 127.0),
                zero_point: 0,
            },
        }
    }
}

/// Weights stored as int8, symmetric (zero point 0), one scale per output
/// channel.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedWeight {
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
}

/// `w` quantized per channel along `axis` (0 for a Conv weight
/// `[out, in, kh, kw]`, 1 for a MatMul weight `[in, out]`) to integers in
/// `-limit..=limit`.
pub fn quantize_weight(w: &[f32], dims: &[usize], axis: usize, limit: i8) -> QuantizedWeight {
    let channels = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner) % channels;
    let mut max_abs = vec![0f32; channels];
    for (i, &x) in w.iter().enumerate() {
        let c = channel_of(i);
        max_abs[c] = max_abs[c].max(x.abs());
    }
    let scales: Vec<f32> = max_abs
        .iter()
        .map(|&m| safe_scale(m, f32::from(limit)))
        .collect();
    let bound = f32::from(limit);
    let values = w
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            (x / scales[channel_of(i)])
                .round_ties_even()
                .clamp(-bound, bound) as i8
        })
        .collect();
    QuantizedWeight { values, scales }
}

/// A bias as int32 in the units of the product it is added to
/// (`input_scale * weight_scale[c]`), as QLinearConv expects.
pub fn quantize_bias(b: &[f32], input_scale: f32, weight_scales: &[f32]) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = weight_scales.iter().map(|s| s * input_scale).collect();
    let values = b
        .iter()
        .zip(&scales)
        .map(|(&x, &s)| {
            (f64::from(x) / f64::from(s))
                .round()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect();
    (values, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint8_ranges_always_hold_zero_exactly() {
        let p = ActivationType::U8Asymmetric.params((0.0, 2.55));
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 0.01).abs() < 1e-7);
        let p = ActivationType::U8Asymmetric.params((-1.0, 3.0));
        assert_eq!(p.zero_point, 64);
        // A range away from zero is widened to reach it.
        let p = ActivationType::U8Asymmetric.params((1.0, 2.0));
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 2.0 / 255.0).abs() < 1e-7);
        let p = ActivationType::I8Symmetric.params((-3.0, 1.0));
        assert_eq!((p.zero_point, p.scale), (0, 3.0 / 127.0));
        // A value that never moved still has a usable scale.
        assert_eq!(ActivationType::U8Asymmetric.params((0.0, 0.0)).scale, 1.0);
    }

    #[test]
    fn weights_are_scaled_per_output_channel() {
        // Conv weight [2, 1, 1, 2]: channel 0 spans 0.5, channel 1 spans 4.
        let q = quantize_weight(&[0.5, -0.125, 4.0, 1.0], &[2, 1, 1, 2], 0, 127);
        assert_eq!(q.values, [127, -32, 127, 32]);
        assert_eq!(q.scales, [0.5 / 127.0, 4.0 / 127.0]);
        // MatMul weight [2 in, 2 out]: a column per output.
        let q = quantize_weight(&[1.0, 8.0, -0.5, 2.0], &[2, 2], 1, 64);
        assert_eq!(q.values, [64, 64, -32, 16]);
        assert_eq!(q.scales, [1.0 / 64.0, 8.0 / 64.0]);
    }

    #[test]
    fn biases_are_in_the_units_of_the_product() {
        let (values, scales) = quantize_bias(&[1.0, -0.5], 0.5, &[0.01, 0.1]);
        assert_eq!(values, [200, -10]);
        assert_eq!(scales, [0.005, 0.05]);
    }
}

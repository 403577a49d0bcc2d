//! Convolutions on the taps that meet the image.
//!
//! On a small feature map a kernel can be wider than the map it slides
//! over: resnet18 at 32 px reaches its last stage at 1x1, where a 3x3
//! convolution with padding 1 multiplies eight of its nine taps by padding
//! only. A convolution with the centre tap alone gives the same output, and
//! the same gradients (a tap that meets only zeros has a zero gradient
//! either way), but oneDNN computes all nine, through its slowest (im2col)
//! path: on a 2-core CPU that stage took about half of resnet18's training
//! step at 32 px. [`conv2d`] drops the taps that meet nothing but padding.

use tch::Tensor;

/// The taps of one kernel axis that meet the image, and the padding that
/// keeps every output where the full kernel put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AxisTaps {
    pub first: i64,
    pub count: i64,
    pub pad_before: i64,
    /// Negative when the input's last rows are never reached.
    pub pad_after: i64,
}

impl AxisTaps {
    fn all(kernel: i64, padding: i64) -> AxisTaps {
        AxisTaps {
            first: 0,
            count: kernel,
            pad_before: padding,
            pad_after: padding,
        }
    }
}

/// The taps of an axis worth computing, or `None` when every tap meets the
/// image at some output (the common case: nothing to drop).
pub(crate) fn axis_taps(input: i64, kernel: i64, stride: i64, padding: i64) -> Option<AxisTaps> {
    let outputs = (input + 2 * padding - kernel).checked_div(stride)? + 1;
    if padding == 0 || outputs <= 0 {
        return None;
    }
    // Tap t reads input index o * stride - padding + t at output o; the
    // first output that reaches index 0 or beyond decides whether t ever
    // lands inside the image.
    let meets_image = |tap: i64| {
        let first_output = ((padding - tap).max(0) + stride - 1) / stride;
        first_output < outputs && first_output * stride - padding + tap < input
    };
    let first = (0..kernel).find(|&t| meets_image(t))?;
    let last = (0..kernel).rev().find(|&t| meets_image(t))?;
    if first == 0 && last == kernel - 1 {
        return None;
    }
    let count = last - first + 1;
    let pad_before = padding - first;
    Some(AxisTaps {
        first,
        count,
        pad_before,
        pad_after: (outputs - 1) * stride + count - input - pad_before,
    })
}

/// `x.conv2d(..)` (square stride and padding, no dilation) computed on the
/// taps that meet the image; the same values and gradients as the full
/// kernel, up to the order of float additions.
pub(crate) fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: i64,
    padding: i64,
    groups: i64,
) -> Tensor {
    let (input, kernel) = (x.size(), w.size());
    let (kh, kw) = (kernel[2], kernel[3]);
    let rows = axis_taps(input[2], kh, stride, padding);
    let cols = axis_taps(input[3], kw, stride, padding);
    if rows.is_none() && cols.is_none() {
        return x.conv2d(w, b, [stride; 2], [padding; 2], [1, 1], groups);
    }
    let rows = rows.unwrap_or(AxisTaps::all(kh, padding));
    let cols = cols.unwrap_or(AxisTaps::all(kw, padding));
    let w = w
        .narrow(2, rows.first, rows.count)
        .narrow(3, cols.first, cols.count);
    let symmetric = |a: AxisTaps| a.pad_before == a.pad_after;
    if symmetric(rows) && symmetric(cols) {
        let pad = [rows.pad_before, cols.pad_before];
        return x.conv2d(&w, b, [stride; 2], pad, [1, 1], groups);
    }
    // Uneven padding, or input rows no tap reaches: pad (or cut) the input
    // itself, then convolve without padding.
    let padded = x.constant_pad_nd([
        cols.pad_before,
        cols.pad_after,
        rows.pad_before,
        rows.pad_after,
    ]);
    padded.conv2d(&w, b, [stride; 2], [0, 0], [1, 1], groups)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    fn taps(first: i64, count: i64, pad_before: i64, pad_after: i64) -> Option<AxisTaps> {
        Some(AxisTaps {
            first,
            count,
            pad_before,
            pad_after,
        })
    }

    #[test]
    fn a_3x3_kernel_on_a_1x1_map_keeps_its_centre() {
        assert_eq!(axis_taps(1, 3, 1, 1), taps(1, 1, 0, 0));
        // resnet's strided 3x3 from 2x2 to 1x1 reads rows 0 and 1 with taps 1 and 2.
        assert_eq!(axis_taps(2, 3, 2, 1), taps(1, 2, 0, 0));
        // A 5x5 depthwise kernel on a 2x2 map: the middle 3 taps, padding 1.
        assert_eq!(axis_taps(2, 5, 1, 2), taps(1, 3, 1, 1));
    }

    #[test]
    fn kernels_that_meet_the_image_everywhere_are_left_alone() {
        assert_eq!(axis_taps(4, 5, 1, 2), None);
        assert_eq!(axis_taps(32, 7, 2, 3), None);
        assert_eq!(axis_taps(2, 3, 1, 1), None);
        assert_eq!(axis_taps(1, 1, 1, 0), None);
        assert_eq!(axis_taps(8, 3, 1, 0), None);
    }

    fn full_and_cropped(h: i64, w: i64, k: i64, stride: i64, padding: i64, groups: i64) {
        let channels = 4;
        let opts = (Kind::Double, Device::Cpu);
        let x = Tensor::randn([2, channels, h, w], opts).set_requires_grad(true);
        let weight = Tensor::randn([8, channels / groups, k, k], opts).set_requires_grad(true);
        let bias = Tensor::randn([8], opts);
        let full = x.conv2d(
            &weight,
            Some(&bias),
            [stride; 2],
            [padding; 2],
            [1, 1],
            groups,
        );
        let ours = conv2d(&x, &weight, Some(&bias), stride, padding, groups);
        let case = format!("{h}x{w} k{k} s{stride} p{padding} g{groups}");
        assert_eq!(ours.size(), full.size(), "{case}");
        let upstream = Tensor::randn(full.size(), opts);
        let grads =
            |y: &Tensor| Tensor::run_backward(&[y * &upstream], &[&x, &weight], false, false);
        let (want, got) = (grads(&full), grads(&ours));
        let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        assert!(diff(&ours, &full) < 1e-10, "{case}: output");
        assert!(diff(&got[0], &want[0]) < 1e-10, "{case}: input gradient");
        assert!(diff(&got[1], &want[1]) < 1e-10, "{case}: weight gradient");
    }

    #[test]
    fn dropping_padding_taps_changes_no_output_and_no_gradient() {
        tch::manual_seed(0);
        for (h, w) in [(1, 1), (2, 2), (1, 3), (3, 2), (4, 4), (5, 5)] {
            for k in [1, 3, 5, 7] {
                for stride in [1, 2] {
                    for padding in [0, k / 2, (stride - 1 + k - 1) / 2] {
                        if h + 2 * padding < k || w + 2 * padding < k {
                            continue;
                        }
                        for groups in [1, 4] {
                            full_and_cropped(h, w, k, stride, padding, groups);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn uneven_padding_and_unread_rows_are_cut_from_the_input() {
        tch::manual_seed(0);
        // Strides larger than the kernel's reach leave the last input row
        // unread (pad_after -1) or the padding uneven.
        assert_eq!(axis_taps(3, 3, 3, 1).map(|a| a.pad_after), Some(-1));
        assert_eq!(
            axis_taps(4, 7, 3, 4).map(|a| (a.pad_before, a.pad_after)),
            Some((3, 2))
        );
        for (h, w, k, stride, padding) in [
            (3, 3, 3, 3, 1),
            (2, 5, 2, 3, 1),
            (4, 4, 7, 3, 4),
            (5, 2, 3, 3, 1),
        ] {
            full_and_cropped(h, w, k, stride, padding, 1);
        }
    }
}

//! The shape backend: runs forward code on shapes alone, to learn which
//! parameters a model declares (names, shapes, initialisers) and what shape
//! comes out, without allocating a single weight.

use crate::backend::{
    Activation, Backend, BatchNormParams, Conv2d, Init, ParamKind, ParamSpec, Pool2d,
};

/// A tensor shape; the batch dimension is whatever the input had.
pub type Shape = Vec<usize>;

/// Records declared parameters and checks that shapes line up. The first
/// mismatch is kept as an error (e.g. an input too small for the network)
/// instead of panicking, so a bad configuration becomes a message.
#[derive(Debug, Default)]
pub struct ShapeBackend {
    params: Vec<ParamSpec>,
    error: Option<String>,
    /// Side of the smallest feature map a spatial (k > 1) convolution read.
    smallest_conv_grid: Option<usize>,
}

impl ShapeBackend {
    /// The parameters in declaration order (each name once), or the first
    /// shape error met.
    pub fn into_params(self) -> Result<Vec<ParamSpec>, String> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.params),
        }
    }

    /// Side of the smallest feature map that a convolution wider than 1x1
    /// read (`None` for networks without one): 1 means its 3x3 kernels saw
    /// only their centre weight.
    pub fn smallest_conv_grid(&self) -> Option<usize> {
        self.smallest_conv_grid
    }

    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok && self.error.is_none() {
            self.error = Some(message());
        }
    }
}

/// Output size of a convolution, `None` when the input is smaller than the kernel.
fn conv_out(size: usize, kernel: usize, c: Conv2d) -> Option<usize> {
    let span = (size + 2 * c.padding).checked_sub(c.dilation * (kernel - 1) + 1)?;
    Some(span / c.stride + 1)
}

fn pool_out(size: usize, p: Pool2d) -> Option<usize> {
    let span = (size + 2 * p.padding).checked_sub(p.kernel)?;
    let mut out = if p.ceil_mode {
        span.div_ceil(p.stride)
    } else {
        span / p.stride
    } + 1;
    // PyTorch: the last window must start inside the (left-padded) input.
    if p.ceil_mode && (out - 1) * p.stride >= size + p.padding {
        out -= 1;
    }
    Some(out)
}

/// Broadcast of two shapes, numpy rules; `None` when they do not broadcast.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Shape> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                1
            };
            let db = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                1
            };
            (da == db || da == 1 || db == 1).then_some(da.max(db))
        })
        .collect()
}

impl ShapeBackend {
    fn broadcast(&mut self, a: &Shape, b: &Shape) -> Shape {
        let out = broadcast(a, b);
        self.check(out.is_some(), || {
            format!("cannot broadcast {a:?} with {b:?}")
        });
        out.unwrap_or_else(|| a.clone())
    }

    fn spatial(&mut self, x: &Shape, out: [Option<usize>; 2], what: &str) -> [usize; 2] {
        self.check(out.iter().all(|o| o.is_some_and(|v| v > 0)), || {
            format!(
                "{what} does not fit a {}x{} input; use a larger input size",
                x[2], x[3]
            )
        });
        out.map(|o| o.unwrap_or(1).max(1))
    }
}

impl Backend for ShapeBackend {
    type T = Shape;

    fn param(&mut self, name: &str, shape: &[usize], kind: ParamKind, init: Init) -> Shape {
        match self.params.iter().find(|p| p.name == name) {
            Some(p) => {
                let same = p.shape == shape;
                self.check(same, || {
                    format!("{name} declared twice with different shapes")
                });
            }
            None => self.params.push(ParamSpec {
                name: name.to_string(),
                shape: shape.to_vec(),
                kind,
                init,
            }),
        }
        shape.to_vec()
    }

    fn constant(&mut self, values: &[f32], shape: &[usize]) -> Shape {
        let n = shape.iter().product::<usize>();
        self.check(values.len() == n, || {
            format!("constant of {} values for shape {shape:?}", values.len())
        });
        shape.to_vec()
    }

    fn training(&self) -> bool {
        false
    }

    fn conv2d(&mut self, x: &Shape, w: &Shape, b: Option<&Shape>, c: Conv2d) -> Shape {
        self.check(x[1] == w[1] * c.groups, || {
            format!("conv input channels: x {x:?}, weight {w:?}")
        });
        self.check(b.is_none_or(|b| b == &vec![w[0]]), || {
            format!("conv bias for weight {w:?}")
        });
        if w[2] > 1 || w[3] > 1 {
            let side = x[2].min(x[3]);
            self.smallest_conv_grid = Some(self.smallest_conv_grid.map_or(side, |s| s.min(side)));
        }
        let [h, wd] = self.spatial(
            x,
            [conv_out(x[2], w[2], c), conv_out(x[3], w[3], c)],
            "a convolution",
        );
        vec![x[0], w[0], h, wd]
    }

    fn batch_norm(&mut self, x: &Shape, p: BatchNormParams<Shape>, _eps: f64) -> Shape {
        self.check(p.weight == vec![x[1]], || {
            format!("batch norm channels of {x:?}")
        });
        x.clone()
    }

    fn layer_norm(&mut self, x: &Shape, w: &Shape, _b: &Shape, _eps: f64) -> Shape {
        self.check(x.last() == Some(&w[0]), || {
            format!("layer norm width of {x:?}")
        });
        x.clone()
    }

    fn linear(&mut self, x: &Shape, w: &Shape, _b: Option<&Shape>) -> Shape {
        self.check(x.last() == Some(&w[1]), || {
            format!("linear input width: x {x:?}, weight {w:?}")
        });
        let mut out = x.clone();
        *out.last_mut().unwrap() = w[0];
        out
    }

    fn matmul(&mut self, a: &Shape, b: &Shape) -> Shape {
        let (n, m) = (a.len(), b.len());
        self.check(a[n - 1] == b[m - 2], || format!("matmul {a:?} x {b:?}"));
        let mut out = self.broadcast(&a[..n - 2].to_vec(), &b[..m - 2].to_vec());
        out.extend([a[n - 2], b[m - 1]]);
        out
    }

    fn activation(&mut self, x: &Shape, _act: Activation) -> Shape {
        x.clone()
    }

    fn softmax(&mut self, x: &Shape, _dim: usize) -> Shape {
        x.clone()
    }

    fn add(&mut self, a: &Shape, b: &Shape) -> Shape {
        self.broadcast(a, b)
    }

    fn mul(&mut self, a: &Shape, b: &Shape) -> Shape {
        self.broadcast(a, b)
    }

    fn scale(&mut self, x: &Shape, _factor: f64) -> Shape {
        x.clone()
    }

    fn max_pool2d(&mut self, x: &Shape, p: Pool2d) -> Shape {
        let [h, w] = self.spatial(
            x,
            [pool_out(x[2], p), pool_out(x[3], p)],
            "a pooling window",
        );
        vec![x[0], x[1], h, w]
    }

    fn avg_pool2d(&mut self, x: &Shape, p: Pool2d) -> Shape {
        self.max_pool2d(x, p)
    }

    fn mean(&mut self, x: &Shape, dims: &[usize], keep: bool) -> Shape {
        x.iter()
            .enumerate()
            .filter_map(|(i, &d)| match (dims.contains(&i), keep) {
                (true, true) => Some(1),
                (true, false) => None,
                _ => Some(d),
            })
            .collect()
    }

    fn reshape(&mut self, x: &Shape, shape: &[i64]) -> Shape {
        let total: usize = x.iter().product();
        let mut out: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| match d {
                0 => x[i],
                -1 => 1,
                d => d as usize,
            })
            .collect();
        if let Some(i) = shape.iter().position(|&d| d == -1) {
            out[i] = total / out.iter().product::<usize>().max(1);
        }
        let same = out.iter().product::<usize>() == total;
        self.check(same, || format!("cannot reshape {x:?} to {shape:?}"));
        out
    }

    fn permute(&mut self, x: &Shape, order: &[usize]) -> Shape {
        order.iter().map(|&i| x[i]).collect()
    }

    fn concat(&mut self, xs: &[Shape], dim: usize) -> Shape {
        let mut out = xs[0].clone();
        out[dim] = xs.iter().map(|s| s[dim]).sum();
        out
    }

    fn slice(&mut self, x: &Shape, dim: usize, start: usize, end: usize) -> Shape {
        let fits = start < end && end <= x[dim];
        self.check(fits, || {
            format!("slice {start}..{end} of dim {dim} in {x:?}")
        });
        let mut out = x.clone();
        out[dim] = end - start;
        out
    }

    fn pad2d(&mut self, x: &Shape, [l, r, t, bo]: [usize; 4]) -> Shape {
        let n = x.len();
        let mut out = x.clone();
        out[n - 1] += l + r;
        out[n - 2] += t + bo;
        out
    }

    fn roll(&mut self, x: &Shape, _shifts: &[i64], _dims: &[usize]) -> Shape {
        x.clone()
    }

    fn repeat_batch(&mut self, x: &Shape, like: &Shape) -> Shape {
        let mut out = x.clone();
        out[0] = like[0];
        out
    }

    fn gather_rows(&mut self, table: &Shape, indices: &[usize]) -> Shape {
        let mut out = table.clone();
        out[0] = indices.len();
        out
    }

    fn dropout(&mut self, x: &Shape, _p: f64) -> Shape {
        x.clone()
    }

    fn drop_path(&mut self, x: &Shape, _p: f64) -> Shape {
        x.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_output_sizes_match_pytorch() {
        let p = |kernel, stride, padding, ceil_mode| Pool2d {
            kernel,
            stride,
            padding,
            ceil_mode,
        };
        // torch.nn.MaxPool2d(3, 2, 1)(torch.zeros(1,1,112,112)).shape[-1] == 56
        assert_eq!(pool_out(112, p(3, 2, 1, false)), Some(56));
        // MaxPool2d(2, 1, ceil_mode=True) on 31 -> 30 (HGNetV2 stem)
        assert_eq!(pool_out(31, p(2, 1, 0, true)), Some(30));
        // MaxPool2d(3, 2, ceil_mode=True) on 14 -> 7; on 7 -> 3
        assert_eq!(pool_out(14, p(3, 2, 0, true)), Some(7));
        assert_eq!(pool_out(7, p(3, 2, 0, true)), Some(3));
        assert_eq!(pool_out(2, p(3, 2, 0, false)), None);
    }

    #[test]
    fn reshape_copies_zeros_and_infers_minus_one() {
        let mut b = ShapeBackend::default();
        assert_eq!(
            b.reshape(&vec![2, 50, 192], &[0, 0, 3, 4, 16]),
            vec![2, 50, 3, 4, 16]
        );
        assert_eq!(
            b.reshape(&vec![2, 8, 8, 96], &[-1, 16, 96]),
            vec![8, 16, 96]
        );
    }
}

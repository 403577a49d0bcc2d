//! The small set of operations every architecture is written against.
//!
//! A backend decides what an operation means: the tch backend (trainer)
//! computes with autograd, the shape backend ([`crate::spec`]) only tracks
//! shapes and records the parameters the model declares, and the ONNX
//! backend (exporter) records graph nodes. Because the forward code is the
//! only definition of an architecture, the model that is trained is exactly
//! the model that is exported.
//!
//! Layout conventions follow PyTorch: images are NCHW, weights are
//! `[out, in / groups, kh, kw]` for convolutions and `[out, in]` for linear
//! layers, so timm's state dicts load without renaming or transposing.

/// Whether a named tensor is learned or only carried along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Learned by the optimizer (weights, biases, tokens, embeddings).
    Trainable,
    /// Part of the state but not learned (BatchNorm running statistics).
    Buffer,
}

/// How a parameter is initialised when no pretrained weights are given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    /// He normal with fan-out, for convolutions followed by ReLU-like
    /// activations (what timm's CNNs use).
    KaimingNormalFanOut,
    /// Normal with this standard deviation, truncated at two deviations
    /// (timm's `trunc_normal_(std=.02)` for transformers).
    TruncNormal(f64),
    /// PyTorch's default for `nn.Linear` / `nn.Conv2d`: uniform in
    /// `±1/sqrt(fan_in)`.
    UniformFanIn,
    /// Normal with this standard deviation (not truncated): timm's
    /// TensorFlow-style convolution init, whose fan-out the layer computes.
    Normal(f64),
    /// Uniform in `±bound`: timm's TensorFlow-style `nn.Linear` init.
    Uniform(f64),
}

/// A parameter as the model declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// timm's dotted name, e.g. `layer1.0.conv1.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
    pub init: Init,
}

/// 2-D convolution settings. Padding is symmetric per axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Conv2d {
    /// Stride 1, no padding, no dilation, one group.
    pub const fn new() -> Self {
        Conv2d {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }

    pub const fn stride(self, stride: usize) -> Self {
        Conv2d { stride, ..self }
    }

    pub const fn padding(self, padding: usize) -> Self {
        Conv2d { padding, ..self }
    }

    pub const fn groups(self, groups: usize) -> Self {
        Conv2d { groups, ..self }
    }

    /// timm's "same-ish" symmetric padding for odd kernels: `((s - 1) + d * (k - 1)) / 2`.
    pub const fn timm_padding(self, kernel: usize) -> Self {
        let padding = ((self.stride - 1) + self.dilation * (kernel - 1)) / 2;
        Conv2d { padding, ..self }
    }
}

impl Default for Conv2d {
    fn default() -> Self {
        Self::new()
    }
}

/// 2-D pooling settings (square kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub ceil_mode: bool,
}

/// Element-wise activation functions, named as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// Exact (erf) GELU, PyTorch's default.
    Gelu,
    Sigmoid,
    /// `x * sigmoid(x)`.
    Silu,
    /// `x * relu6(x + 3) / 6`.
    HardSwish,
    /// `relu6(x + 3) / 6`.
    HardSigmoid,
}

/// The operations forward code may use. Operations borrow their inputs and
/// return new values; `T` need not be `Clone` (tch tensors are not), so an
/// identity path is written as a reference (`let s = if .. { &y } else { x };`).
///
/// Shapes are PyTorch's. `reshape` follows ONNX: a `0` copies the input's
/// dimension at that index and one `-1` is inferred, which keeps the batch
/// dimension symbolic for export.
pub trait Backend {
    type T;

    /// The named parameter, declared with its shape, kind and initialiser.
    fn param(&mut self, name: &str, shape: &[usize], kind: ParamKind, init: Init) -> Self::T;
    /// A constant tensor computed from the configuration (masks, indices).
    fn constant(&mut self, values: &[f32], shape: &[usize]) -> Self::T;
    /// Whether dropout, drop-path and batch statistics are active.
    fn training(&self) -> bool;

    fn conv2d(&mut self, x: &Self::T, w: &Self::T, b: Option<&Self::T>, c: Conv2d) -> Self::T;
    /// BatchNorm over dim 1; in training it uses and updates batch statistics
    /// (momentum 0.1, as PyTorch).
    fn batch_norm(&mut self, x: &Self::T, p: BatchNormParams<Self::T>, eps: f64) -> Self::T;
    /// LayerNorm over the last dimension.
    fn layer_norm(&mut self, x: &Self::T, w: &Self::T, b: &Self::T, eps: f64) -> Self::T;
    /// `x @ w^T + b` over the last dimension.
    fn linear(&mut self, x: &Self::T, w: &Self::T, b: Option<&Self::T>) -> Self::T;
    fn matmul(&mut self, a: &Self::T, b: &Self::T) -> Self::T;
    fn activation(&mut self, x: &Self::T, act: Activation) -> Self::T;
    /// The same, allowed to overwrite `x`: the CPU spends much of a
    /// training step allocating and filling fresh activation maps, and
    /// PyTorch models avoid that with `inplace=True`. Only for `x` fresh
    /// from `conv2d`, `batch_norm`, `linear` or `add`, whose gradients do
    /// not need their own output (autograd refuses otherwise).
    fn activation_in_place(&mut self, x: Self::T, act: Activation) -> Self::T {
        self.activation(&x, act)
    }
    fn softmax(&mut self, x: &Self::T, dim: usize) -> Self::T;

    /// Element-wise with broadcasting.
    fn add(&mut self, a: &Self::T, b: &Self::T) -> Self::T;
    fn mul(&mut self, a: &Self::T, b: &Self::T) -> Self::T;
    fn scale(&mut self, x: &Self::T, factor: f64) -> Self::T;

    fn max_pool2d(&mut self, x: &Self::T, p: Pool2d) -> Self::T;
    /// Average pooling; padded positions are not counted (PyTorch's
    /// `count_include_pad=False`, what timm uses).
    fn avg_pool2d(&mut self, x: &Self::T, p: Pool2d) -> Self::T;
    /// Mean over `dims`, keeping them as size 1 when `keep` is set.
    fn mean(&mut self, x: &Self::T, dims: &[usize], keep: bool) -> Self::T;

    fn reshape(&mut self, x: &Self::T, shape: &[i64]) -> Self::T;
    fn permute(&mut self, x: &Self::T, order: &[usize]) -> Self::T;
    fn concat(&mut self, xs: &[Self::T], dim: usize) -> Self::T;
    /// `x[.., start..end, ..]` along `dim`.
    fn slice(&mut self, x: &Self::T, dim: usize, start: usize, end: usize) -> Self::T;
    /// Zero padding of the last two dims: `[left, right, top, bottom]` as `F.pad`.
    fn pad2d(&mut self, x: &Self::T, pads: [usize; 4]) -> Self::T;
    /// Cyclic shift of `dims` by `shifts`, as `torch.roll`.
    fn roll(&mut self, x: &Self::T, shifts: &[i64], dims: &[usize]) -> Self::T;
    /// `like.shape[0]` copies of `x` (whose dim 0 is 1) along dim 0: a class
    /// token for every image of the batch.
    fn repeat_batch(&mut self, x: &Self::T, like: &Self::T) -> Self::T;
    /// Rows of `table` (dim 0) picked by `indices`, whose values are whole
    /// numbers; result shape `[indices.len(), table.shape[1..]]`.
    fn gather_rows(&mut self, table: &Self::T, indices: &[usize]) -> Self::T;

    /// Zeroes elements with probability `p` in training; identity otherwise.
    fn dropout(&mut self, x: &Self::T, p: f64) -> Self::T;
    /// Drops whole samples of a residual branch with probability `p` in
    /// training (stochastic depth); identity otherwise.
    fn drop_path(&mut self, x: &Self::T, p: f64) -> Self::T;
}

/// The four tensors of a BatchNorm layer.
pub struct BatchNormParams<T> {
    pub weight: T,
    pub bias: T,
    pub running_mean: T,
    pub running_var: T,
}

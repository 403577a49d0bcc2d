//! The ONNX backend: the zoo's forward code, recorded as graph nodes.
//!
//! Running the same forward code that trains the model is what makes the
//! exported graph the trained model: there is no second definition of any
//! architecture to drift. Shapes are tracked by the models crate's shape
//! backend (the batch dimension as 1; the graph itself keeps it symbolic).
//! Weights are constants, so work that only depends on weights is done
//! here once (linear weights transposed for MatMul, Swin's relative
//! position bias gathered) and BatchNorm is folded afterwards ([`crate::fold`]).

use std::collections::HashMap;

use semiclass_models::backend::{
    Activation, Backend, BatchNormParams, Conv2d, Init, ParamKind, Pool2d,
};
use semiclass_models::spec::{Shape, ShapeBackend};

use crate::export::{INPUT_NAME, OUTPUT_NAME};
use crate::graph::{Attr, Const, Graph};

/// A value of the graph: its name and its shape (batch recorded as 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub name: String,
    pub shape: Shape,
}

/// Records the forward pass of a model whose weights are `weights`.
pub struct OnnxBackend {
    pub graph: Graph,
    shapes: ShapeBackend,
    /// Checkpoint tensors not yet declared by the model.
    weights: HashMap<String, Const>,
    /// Declared parameters, by name.
    params: HashMap<String, Value>,
    /// Every weight that does not fit the model, reported together.
    pub problems: Vec<String>,
}

fn ints(values: impl IntoIterator<Item = usize>) -> Attr {
    Attr::Ints(values.into_iter().map(|v| v as i64).collect())
}

fn pair(v: usize) -> Attr {
    ints([v, v])
}

impl OnnxBackend {
    /// A backend holding `weights` (timm names) with the graph input of
    /// shape `input_shape`, and the output's name reserved for the result.
    pub fn new(weights: HashMap<String, Const>, input_shape: Shape) -> (OnnxBackend, Value) {
        let mut graph = Graph::default();
        graph.input = graph.fresh(INPUT_NAME);
        graph.output = graph.fresh(OUTPUT_NAME);
        graph
            .shapes
            .insert(graph.input.clone(), input_shape.clone());
        let input = Value {
            name: graph.input.clone(),
            shape: input_shape,
        };
        let backend = OnnxBackend {
            graph,
            shapes: ShapeBackend::default(),
            weights,
            params: HashMap::new(),
            problems: Vec::new(),
        };
        (backend, input)
    }

    /// The checkpoint tensors the model never declared.
    pub fn leftover_weights(&self) -> impl Iterator<Item = &String> {
        self.weights.keys()
    }

    /// Shape errors met by the shape backend (a bug if the model was built).
    pub fn shape_error(self) -> Result<Graph, String> {
        self.shapes.into_params().map(|_| self.graph)
    }

    fn node(
        &mut self,
        op: &'static str,
        inputs: &[&Value],
        attrs: Vec<(&'static str, Attr)>,
        shape: Shape,
    ) -> Value {
        let inputs = inputs.iter().map(|v| v.name.clone()).collect();
        let name = self.graph.add_node(op, inputs, attrs, shape.clone());
        Value { name, shape }
    }

    fn constant_value(&mut self, base: &str, c: Const) -> Value {
        let shape = c.dims.clone();
        let name = self.graph.add_const(base, c);
        Value { name, shape }
    }

    fn int64s(&mut self, base: &str, values: Vec<i64>) -> Value {
        self.constant_value(base, Const::i64(values))
    }

    fn scalar(&mut self, value: f32) -> Value {
        self.constant_value("scalar", Const::f32(&[], vec![value]))
    }

    /// `w` transposed (2-D), computed here when it is a constant.
    fn transposed(&mut self, w: &Value) -> Value {
        let shape = vec![w.shape[1], w.shape[0]];
        let Some(values) = self.graph.consts.get(&w.name).and_then(|c| c.floats()) else {
            return self.node("Transpose", &[w], vec![("perm", ints([1, 0]))], shape);
        };
        let (rows, cols) = (w.shape[0], w.shape[1]);
        let t: Vec<f32> = (0..cols * rows)
            .map(|i| values[(i % rows) * cols + i / rows])
            .collect();
        let base = format!("{}_t", w.name);
        self.constant_value(&base, Const::f32(&shape, t))
    }

    /// `x[.., start..end, ..]` along `dim`, as an ONNX Slice.
    fn slice_node(
        &mut self,
        x: &Value,
        dim: usize,
        (start, end): (usize, usize),
        shape: Shape,
    ) -> Value {
        let starts = self.int64s("starts", vec![start as i64]);
        let ends = self.int64s("ends", vec![end as i64]);
        let axes = self.int64s("axes", vec![dim as i64]);
        self.node("Slice", &[x, &starts, &ends, &axes], vec![], shape)
    }

    /// Exact GELU as PyTorch exports it, `x * 0.5 * (1 + erf(x / sqrt 2))`,
    /// which ONNX Runtime fuses into its Gelu kernel (opset 17 has no Gelu).
    fn gelu(&mut self, x: &Value) -> Value {
        let s = x.shape.clone();
        let sqrt2 = self.scalar(std::f32::consts::SQRT_2);
        let t = self.node("Div", &[x, &sqrt2], vec![], s.clone());
        let e = self.node("Erf", &[&t], vec![], s.clone());
        let one = self.scalar(1.0);
        let a = self.node("Add", &[&e, &one], vec![], s.clone());
        let m = self.node("Mul", &[x, &a], vec![], s.clone());
        let half = self.scalar(0.5);
        self.node("Mul", &[&m, &half], vec![], s)
    }
}

impl Backend for OnnxBackend {
    type T = Value;

    fn param(&mut self, name: &str, shape: &[usize], _kind: ParamKind, _init: Init) -> Value {
        if let Some(v) = self.params.get(name) {
            return v.clone();
        }
        let c = match self.weights.remove(name) {
            Some(c) if c.dims == shape => c,
            Some(c) => {
                let problem = format!(
                    "tensor '{name}' has shape {:?}, the model needs {shape:?}",
                    c.dims
                );
                self.problems.push(problem);
                Const::f32(shape, vec![0.0; shape.iter().product()])
            }
            None => {
                self.problems.push(format!("no tensor '{name}'"));
                Const::f32(shape, vec![0.0; shape.iter().product()])
            }
        };
        let v = self.constant_value(name, c);
        self.params.insert(name.to_string(), v.clone());
        v
    }

    fn constant(&mut self, values: &[f32], shape: &[usize]) -> Value {
        self.shapes.constant(values, shape);
        self.constant_value("const", Const::f32(shape, values.to_vec()))
    }

    fn training(&self) -> bool {
        false
    }

    fn conv2d(&mut self, x: &Value, w: &Value, b: Option<&Value>, c: Conv2d) -> Value {
        let shape = self
            .shapes
            .conv2d(&x.shape, &w.shape, b.map(|b| &b.shape), c);
        let attrs = vec![
            ("kernel_shape", ints([w.shape[2], w.shape[3]])),
            ("strides", pair(c.stride)),
            ("pads", ints([c.padding; 4])),
            ("dilations", pair(c.dilation)),
            ("group", Attr::Int(c.groups as i64)),
        ];
        let inputs: Vec<&Value> = [Some(x), Some(w), b].into_iter().flatten().collect();
        self.node("Conv", &inputs, attrs, shape)
    }

    fn batch_norm(&mut self, x: &Value, p: BatchNormParams<Value>, eps: f64) -> Value {
        let shape = x.shape.clone();
        let inputs = [x, &p.weight, &p.bias, &p.running_mean, &p.running_var];
        self.node(
            "BatchNormalization",
            &inputs,
            vec![("epsilon", Attr::Float(eps as f32))],
            shape,
        )
    }

    fn layer_norm(&mut self, x: &Value, w: &Value, b: &Value, eps: f64) -> Value {
        let shape = self.shapes.layer_norm(&x.shape, &w.shape, &b.shape, eps);
        let attrs = vec![
            ("axis", Attr::Int(-1)),
            ("epsilon", Attr::Float(eps as f32)),
        ];
        self.node("LayerNormalization", &[x, w, b], attrs, shape)
    }

    fn linear(&mut self, x: &Value, w: &Value, b: Option<&Value>) -> Value {
        let shape = self.shapes.linear(&x.shape, &w.shape, b.map(|b| &b.shape));
        let wt = self.transposed(w);
        let y = self.node("MatMul", &[x, &wt], vec![], shape.clone());
        match b {
            Some(b) => self.node("Add", &[&y, b], vec![], shape),
            None => y,
        }
    }

    fn matmul(&mut self, a: &Value, b: &Value) -> Value {
        let shape = self.shapes.matmul(&a.shape, &b.shape);
        self.node("MatMul", &[a, b], vec![], shape)
    }

    fn activation(&mut self, x: &Value, act: Activation) -> Value {
        let s = x.shape.clone();
        match act {
            Activation::Relu => self.node("Relu", &[x], vec![], s),
            Activation::Sigmoid => self.node("Sigmoid", &[x], vec![], s),
            Activation::HardSwish => self.node("HardSwish", &[x], vec![], s),
            Activation::HardSigmoid => {
                let attrs = vec![
                    ("alpha", Attr::Float(1.0 / 6.0)),
                    ("beta", Attr::Float(0.5)),
                ];
                self.node("HardSigmoid", &[x], attrs, s)
            }
            Activation::Silu => {
                let sig = self.node("Sigmoid", &[x], vec![], s.clone());
                self.node("Mul", &[x, &sig], vec![], s)
            }
            Activation::Gelu => self.gelu(x),
        }
    }

    fn softmax(&mut self, x: &Value, dim: usize) -> Value {
        let attrs = vec![("axis", Attr::Int(dim as i64))];
        self.node("Softmax", &[x], attrs, x.shape.clone())
    }

    fn add(&mut self, a: &Value, b: &Value) -> Value {
        let shape = self.shapes.add(&a.shape, &b.shape);
        self.node("Add", &[a, b], vec![], shape)
    }

    fn mul(&mut self, a: &Value, b: &Value) -> Value {
        let shape = self.shapes.mul(&a.shape, &b.shape);
        self.node("Mul", &[a, b], vec![], shape)
    }

    fn scale(&mut self, x: &Value, factor: f64) -> Value {
        let s = self.scalar(factor as f32);
        self.node("Mul", &[x, &s], vec![], x.shape.clone())
    }

    fn max_pool2d(&mut self, x: &Value, p: Pool2d) -> Value {
        let shape = self.shapes.max_pool2d(&x.shape, p);
        self.node("MaxPool", &[x], pool_attrs(p), shape)
    }

    fn avg_pool2d(&mut self, x: &Value, p: Pool2d) -> Value {
        let shape = self.shapes.avg_pool2d(&x.shape, p);
        let mut attrs = pool_attrs(p);
        attrs.push(("count_include_pad", Attr::Int(0)));
        self.node("AveragePool", &[x], attrs, shape)
    }

    fn mean(&mut self, x: &Value, dims: &[usize], keep: bool) -> Value {
        let shape = self.shapes.mean(&x.shape, dims, keep);
        // A feature map's mean over height and width, kept as 1x1, is
        // ONNX's GlobalAveragePool, which ONNX Runtime runs on 8-bit values
        // in an int8 graph (a ReduceMean stays float between a
        // DequantizeLinear and a QuantizeLinear).
        if x.shape.len() == 4 && dims == [2, 3] && keep {
            return self.node("GlobalAveragePool", &[x], vec![], shape);
        }
        let attrs = vec![
            ("axes", ints(dims.iter().copied())),
            ("keepdims", Attr::Int(keep.into())),
        ];
        self.node("ReduceMean", &[x], attrs, shape)
    }

    fn reshape(&mut self, x: &Value, shape: &[i64]) -> Value {
        let out = self.shapes.reshape(&x.shape, shape);
        let target = self.int64s("shape", shape.to_vec());
        self.node("Reshape", &[x, &target], vec![], out)
    }

    fn permute(&mut self, x: &Value, order: &[usize]) -> Value {
        let shape = self.shapes.permute(&x.shape, order);
        self.node(
            "Transpose",
            &[x],
            vec![("perm", ints(order.iter().copied()))],
            shape,
        )
    }

    fn concat(&mut self, xs: &[Value], dim: usize) -> Value {
        let shapes: Vec<Shape> = xs.iter().map(|x| x.shape.clone()).collect();
        let shape = self.shapes.concat(&shapes, dim);
        let inputs: Vec<&Value> = xs.iter().collect();
        self.node(
            "Concat",
            &inputs,
            vec![("axis", Attr::Int(dim as i64))],
            shape,
        )
    }

    fn slice(&mut self, x: &Value, dim: usize, start: usize, end: usize) -> Value {
        let shape = self.shapes.slice(&x.shape, dim, start, end);
        self.slice_node(x, dim, (start, end), shape)
    }

    fn pad2d(&mut self, x: &Value, [left, right, top, bottom]: [usize; 4]) -> Value {
        let shape = self.shapes.pad2d(&x.shape, [left, right, top, bottom]);
        // ONNX: all begins, then all ends, over every axis.
        let n = x.shape.len();
        let mut pads = vec![0i64; 2 * n];
        pads[n - 2] = top as i64;
        pads[n - 1] = left as i64;
        pads[2 * n - 2] = bottom as i64;
        pads[2 * n - 1] = right as i64;
        let pads = self.int64s("pads", pads);
        // The default mode, "constant", pads with zeros.
        self.node("Pad", &[x, &pads], vec![], shape)
    }

    /// `torch.roll` as two slices swapped: `out[i] = x[(i - k) mod n]`.
    fn roll(&mut self, x: &Value, shifts: &[i64], dims: &[usize]) -> Value {
        let mut y = x.clone();
        for (&shift, &dim) in shifts.iter().zip(dims) {
            let n = y.shape[dim];
            let k = shift.rem_euclid(n as i64) as usize;
            if k == 0 {
                continue;
            }
            let mut tail = y.shape.clone();
            tail[dim] = k;
            let mut head = y.shape.clone();
            head[dim] = n - k;
            let a = self.slice_node(&y, dim, (n - k, n), tail);
            let b = self.slice_node(&y, dim, (0, n - k), head);
            y = self.node(
                "Concat",
                &[&a, &b],
                vec![("axis", Attr::Int(dim as i64))],
                y.shape.clone(),
            );
        }
        y
    }

    /// Expand to `[like.shape[0], x.shape[1..]]`, the batch size read at run time.
    fn repeat_batch(&mut self, x: &Value, like: &Value) -> Value {
        let shape = self.shapes.repeat_batch(&x.shape, &like.shape);
        let attrs = vec![("start", Attr::Int(0)), ("end", Attr::Int(1))];
        let batch = self.node("Shape", &[like], attrs, vec![1]);
        let rest = x.shape[1..].iter().map(|&d| d as i64).collect();
        let rest = self.int64s("shape", rest);
        let target = self.node(
            "Concat",
            &[&batch, &rest],
            vec![("axis", Attr::Int(0))],
            vec![x.shape.len()],
        );
        self.node("Expand", &[x, &target], vec![], shape)
    }

    fn gather_rows(&mut self, table: &Value, indices: &[usize]) -> Value {
        let shape = self.shapes.gather_rows(&table.shape, indices);
        let row: usize = table.shape[1..].iter().product();
        if let Some(values) = self.graph.consts.get(&table.name).and_then(|c| c.floats()) {
            let rows = indices
                .iter()
                .flat_map(|&i| &values[i * row..(i + 1) * row]);
            let gathered = rows.copied().collect();
            let base = format!("{}_gathered", table.name);
            return self.constant_value(&base, Const::f32(&shape, gathered));
        }
        let indices = self.int64s("indices", indices.iter().map(|&i| i as i64).collect());
        self.node(
            "Gather",
            &[table, &indices],
            vec![("axis", Attr::Int(0))],
            shape,
        )
    }

    fn dropout(&mut self, x: &Value, _p: f64) -> Value {
        x.clone()
    }

    fn drop_path(&mut self, x: &Value, _p: f64) -> Value {
        x.clone()
    }
}

fn pool_attrs(p: Pool2d) -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", pair(p.kernel)),
        ("strides", pair(p.stride)),
        ("pads", ints([p.padding; 4])),
        ("ceil_mode", Attr::Int(p.ceil_mode.into())),
    ]
}

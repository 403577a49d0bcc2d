//! Which values of a float graph get a QuantizeLinear/DequantizeLinear pair.
//!
//! ONNX Runtime runs a node on 8-bit data when every float input it reads
//! comes out of a DequantizeLinear and its output goes into a
//! QuantizeLinear (QLinearConv, QLinearMatMul, QLinearAdd, QLinearMul,
//! QLinearConcat, QLinearAveragePool); a node that only moves values
//! (MaxPool) loses the pair around it when both sides share one scale. So
//! the pairs go on every activation such a node reads or writes; anything
//! else (LayerNorm, Softmax, HardSwish, the classifier's bias) reads the
//! dequantized value and runs in float.

use std::collections::{HashMap, HashSet};

use crate::graph::{Graph, Node};

/// What [`plan`] chose.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Values quantized, each once, in graph order.
    pub activations: Vec<String>,
    /// Values that take another value's parameters: a MaxPool's output
    /// its input's, so the pool runs on the 8-bit values as they are.
    pub shared: HashMap<String, String>,
    /// Indices of the Conv and MatMul nodes whose constant weight (and bias)
    /// are quantized per output channel.
    pub weighted: Vec<usize>,
}

impl Plan {
    /// The value whose measured range `value` is quantized with.
    pub fn range_source<'a>(&'a self, value: &'a str) -> &'a str {
        self.shared.get(value).map_or(value, String::as_str)
    }

    /// The values whose ranges calibration measures.
    pub fn measured(&self) -> Vec<String> {
        let measured = |v: &&String| !self.shared.contains_key(*v);
        self.activations.iter().filter(measured).cloned().collect()
    }
}

/// Nodes that move 8-bit values without computing on them.
const MOVES_VALUES: &[&str] = &["MaxPool"];

/// The plan for `g`. With `fold_relu`, a Relu right after a quantized node
/// is left to the QuantizeLinear after it: with an asymmetric uint8 range
/// that starts at 0, quantizing clamps at 0 as the Relu would, and ONNX
/// Runtime drops the Relu (a symmetric range cannot, so it stays).
pub fn plan(g: &Graph, fold_relu: bool) -> Plan {
    let readers = readers(g);
    let mut chosen = Chosen::new(&g.output);
    let mut plan = Plan::default();
    for (i, node) in g.nodes.iter().enumerate() {
        let Some(weight) = int8_kind(g, node) else {
            continue;
        };
        if weight {
            plan.weighted.push(i);
        }
        let activations = node.inputs.iter().filter(|v| !g.consts.contains_key(*v));
        activations.for_each(|v| chosen.add(v));
        let mut out = &node.outputs[0];
        if fold_relu {
            out = after_relu(g, &readers, out);
        }
        chosen.add(out);
        if MOVES_VALUES.contains(&node.op) {
            plan.shared.insert(out.clone(), node.inputs[0].clone());
        }
    }
    plan.activations = chosen.order;
    plan
}

/// Values chosen once each, in the order they were first chosen; the
/// graph output (the logits) stays float.
struct Chosen<'a> {
    output: &'a str,
    seen: HashSet<String>,
    order: Vec<String>,
}

impl<'a> Chosen<'a> {
    fn new(output: &'a str) -> Self {
        Chosen {
            output,
            seen: HashSet::new(),
            order: Vec::new(),
        }
    }

    fn add(&mut self, value: &str) {
        if value != self.output && self.seen.insert(value.to_string()) {
            self.order.push(value.to_string());
        }
    }
}

/// Indices of the nodes reading each value.
fn readers(g: &Graph) -> HashMap<&str, Vec<usize>> {
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, node) in g.nodes.iter().enumerate() {
        for input in &node.inputs {
            readers.entry(input.as_str()).or_default().push(i);
        }
    }
    readers
}

/// The output of the Relu that alone reads `value`, else `value`.
fn after_relu<'a>(
    g: &'a Graph,
    readers: &HashMap<&str, Vec<usize>>,
    value: &'a String,
) -> &'a String {
    match readers.get(value.as_str()).map(Vec::as_slice) {
        Some(&[only]) if g.nodes[only].op == "Relu" && *value != g.output => {
            &g.nodes[only].outputs[0]
        }
        _ => value,
    }
}

/// `Some(true)` for a node that runs on int8 with a quantized constant
/// weight, `Some(false)` for one that runs on int8 with activations only,
/// `None` for a node that stays float.
fn int8_kind(g: &Graph, node: &Node) -> Option<bool> {
    let is_const = |i: usize| node.inputs.get(i).is_some_and(|v| g.consts.contains_key(v));
    let rank = |i: usize| g.shapes.get(&node.inputs[i]).map_or(0, Vec::len);
    let no_consts = (0..node.inputs.len()).all(|i| !is_const(i));
    match node.op {
        "Conv" => (is_const(1) && !is_const(0)).then_some(true),
        "MatMul" if is_const(1) && rank(1) == 2 && !is_const(0) => Some(true),
        "MatMul" | "Add" | "Mul" | "Concat" | "AveragePool" | "MaxPool" => {
            no_consts.then_some(false)
        }
        _ => None,
    }
}

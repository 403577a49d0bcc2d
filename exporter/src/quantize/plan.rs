//! Which values of a float graph get a QuantizeLinear/DequantizeLinear pair.
//!
//! ONNX Runtime runs a node on 8-bit data when every float input it reads
//! comes out of a DequantizeLinear and its output goes into a
//! QuantizeLinear (QLinearConv, QLinearMatMul, QLinearAdd, QLinearMul,
//! QLinearConcat, QLinearAveragePool, QLinearGlobalAveragePool); a node
//! that only moves values (MaxPool) loses the pair around it when both
//! sides share one scale. So the pairs go on every activation such a node
//! reads or writes; anything else (LayerNorm, Softmax, HardSwish, the
//! classifier's bias) reads the dequantized value and runs in float.
//!
//! A Concat's inputs are quantized with the Concat's own parameters where
//! they can be ([`Plan::joined`]): ONNX Runtime's QLinearConcat copies an
//! input whose scale and zero point are the output's, and requantizes any
//! other byte by byte through a lookup table, on one thread (hgnetv2_b4
//! concatenates seven feature maps in each block: BENCHMARKS.md, "int8
//! export").

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
    /// Concat inputs -> the Concat's output, whose measured range covers
    /// them: the input takes the output's parameters unless that would
    /// cost it more than a bit or a folded Relu (see `rewrite`). Never a
    /// value of `shared`, nor a Concat's output, so no chain forms.
    pub joined: HashMap<String, String>,
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
    plan.joined = concat_joins(g, &plan);
    plan
}

/// Each planned Concat's inputs -> its output ([`Plan::joined`]); a value
/// two Concats read joins the first.
fn concat_joins(g: &Graph, plan: &Plan) -> HashMap<String, String> {
    let planned: HashSet<&String> = plan.activations.iter().collect();
    let in_shared =
        |v: &String| plan.shared.contains_key(v) || plan.shared.values().any(|s| s == v);
    let concats = g.nodes.iter().filter(|n| n.op == "Concat");
    let concat_outputs: HashSet<&String> = concats.clone().map(|n| &n.outputs[0]).collect();
    let mut joined = HashMap::new();
    for node in concats.filter(|n| planned.contains(&n.outputs[0])) {
        for input in &node.inputs {
            let joinable = planned.contains(input)
                && !in_shared(input)
                && !concat_outputs.contains(input)
                && *input != g.input;
            if joinable && !joined.contains_key(input) {
                joined.insert(input.clone(), node.outputs[0].clone());
            }
        }
    }
    joined
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
        "MatMul" | "Add" | "Mul" | "Concat" | "AveragePool" | "GlobalAveragePool" | "MaxPool" => {
            no_consts.then_some(false)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::export::record_checkpoint;
    use crate::graph::{Attr, Const, Data};
    use crate::quantize::{SCHEME, quantized_graph};
    use crate::testing;

    /// hgnetv2_b0's float graph: its stem concatenates a MaxPool's output
    /// with a conv's, and every block concatenates seven feature maps.
    fn hgnet() -> Graph {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = testing::checkpoint(dir.path(), "hgnetv2_b0", 32);
        record_checkpoint(&checkpoint).unwrap().graph
    }

    fn concats(g: &Graph) -> Vec<&Node> {
        g.nodes.iter().filter(|n| n.op == "Concat").collect()
    }

    #[test]
    fn concat_inputs_join_the_concat_but_a_pools_output() {
        let g = hgnet();
        let p = plan(&g, true);
        let pooled: Vec<&String> = p.shared.keys().collect();
        assert_eq!(pooled.len(), 1, "the stem's MaxPool");
        let mut joined = 0;
        for node in concats(&g) {
            for input in &node.inputs {
                let expected = (!pooled.contains(&input)).then_some(&node.outputs[0]);
                assert_eq!(p.joined.get(input), expected, "{input}");
                joined += usize::from(expected.is_some());
            }
        }
        // The stem's conv branch, and the input and 3 layers of each of
        // the 5 blocks.
        assert_eq!(joined, 1 + 5 * 4);
        assert_eq!(p.joined.len(), joined);
    }

    #[test]
    fn the_heads_global_pool_runs_on_8_bit_values() {
        let g = hgnet();
        let p = plan(&g, true);
        let pools: Vec<&Node> = g
            .nodes
            .iter()
            .filter(|n| n.op == "GlobalAveragePool")
            .collect();
        assert_eq!(pools.len(), 1);
        assert!(g.nodes.iter().all(|n| n.op != "ReduceMean"));
        for value in [&pools[0].inputs[0], &pools[0].outputs[0]] {
            assert!(p.activations.contains(value), "{value}");
        }
    }

    /// input -> Conv -> Relu = a -> Conv -> Relu = b; Concat(a, b) = c ->
    /// Conv -> output.
    fn two_relu_maps() -> (Graph, [String; 3]) {
        let mut g = Graph::default();
        g.input = g.fresh("input");
        let map = |channels: usize| vec![1, channels, 4, 4];
        g.shapes.insert(g.input.clone(), map(2));
        let conv_relu = |g: &mut Graph, x: String| {
            let w = g.add_const("w", Const::f32(&[2, 2, 1, 1], vec![0.5; 4]));
            let y = g.add_node("Conv", vec![x, w], vec![], map(2));
            g.add_node("Relu", vec![y], vec![], map(2))
        };
        let input = g.input.clone();
        let a = conv_relu(&mut g, input);
        let b = conv_relu(&mut g, a.clone());
        let axis = vec![("axis", Attr::Int(1))];
        let c = g.add_node("Concat", vec![a.clone(), b.clone()], axis, map(4));
        let w = g.add_const("w", Const::f32(&[3, 4, 1, 1], vec![0.5; 12]));
        g.output = g.add_node("Conv", vec![c.clone(), w], vec![], map(3));
        (g, [a, b, c])
    }

    /// The scale and zero point of the QuantizeLinear that quantizes
    /// `value` in the int8 graph `q`.
    fn params_of(q: &Graph, value: &str) -> (f32, Data) {
        let reads = |n: &&Node| n.op == "QuantizeLinear" && n.inputs[0] == value;
        let quantize = q.nodes.iter().find(reads).unwrap();
        let scale = q.consts[&quantize.inputs[1]].floats().unwrap()[0];
        (scale, q.consts[&quantize.inputs[2]].data.clone())
    }

    #[test]
    fn joined_inputs_take_the_concats_scale_unless_a_bit_or_a_folded_relu_is_lost() {
        let (g, [a, b, c]) = two_relu_maps();
        let p = plan(&g, true);
        let expected = HashMap::from([(a.clone(), c.clone()), (b.clone(), c.clone())]);
        assert_eq!(p.joined, expected);
        let ranges = |c_low: f32| {
            HashMap::from([
                (g.input.clone(), (-1.0, 1.0)),
                (a.clone(), (0.0, 1.0)),
                (b.clone(), (0.0, 2.0)),
                (c.clone(), (c_low, 2.0)),
            ])
        };
        // Both maps from 0: the Concat's parameters for all, so ONNX
        // Runtime copies the bytes; the Relus are still folded.
        let q = quantized_graph(&g, &p, &ranges(0.0), SCHEME);
        let zero = Data::U8(vec![0]);
        // The QuantizeLinear of a Relu'd map reads the Conv before it.
        let conv_outputs: Vec<&String> = g
            .nodes
            .iter()
            .filter(|n| n.op == "Conv")
            .map(|n| &n.outputs[0])
            .collect();
        let concat = (2.0 / 255.0, zero.clone());
        assert_eq!(params_of(&q, conv_outputs[0]), concat);
        assert_eq!(params_of(&q, conv_outputs[1]), concat);
        assert_eq!(params_of(&q, &c), concat);
        assert!(q.nodes.iter().all(|n| n.op != "Relu"));

        // The Concat's range below 0: its zero point could not clamp, so
        // each map keeps its own parameters and its folded Relu.
        let q = quantized_graph(&g, &p, &ranges(-1.0), SCHEME);
        assert_eq!(params_of(&q, conv_outputs[0]), (1.0 / 255.0, zero.clone()));
        assert_eq!(params_of(&q, conv_outputs[1]), (2.0 / 255.0, zero.clone()));
        assert_ne!(params_of(&q, &c).1, Data::U8(vec![0]));
        assert!(q.nodes.iter().all(|n| n.op != "Relu"));

        // The Concat's range over twice a map's: that map would lose more
        // than a bit (and the next layer reads it), so it keeps its own.
        let mut wide = ranges(0.0);
        wide.insert(c.clone(), (0.0, 2.5));
        let q = quantized_graph(&g, &p, &wide, SCHEME);
        assert_eq!(params_of(&q, conv_outputs[0]), (1.0 / 255.0, zero.clone()));
        assert_eq!(params_of(&q, conv_outputs[1]), (2.5 / 255.0, zero));
    }
}

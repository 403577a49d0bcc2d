//! The float graph rewritten in QDQ form: a QuantizeLinear/DequantizeLinear
//! pair after each planned activation, the planned weights stored as int8
//! (biases as int32) behind a DequantizeLinear. Every node still computes
//! in float on dequantized values, so the graph is exact ONNX anyone can
//! run; ONNX Runtime fuses each DQ -> op -> Q into its integer kernel.

use std::collections::{HashMap, HashSet};

use super::params::{ActivationParams, ActivationType, quantize_bias, quantize_weight};
use super::plan::Plan;
use crate::graph::{Attr, Const, Data, Graph, Node};

/// The numeric choices of an int8 graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scheme {
    pub activations: ActivationType,
    /// Weights in `-limit..=limit`: 127, or 64 (7 bits) where the CPU's
    /// 8-bit multiply-add can saturate (see [`super::WEIGHT_LIMIT`]).
    pub weight_limit: i8,
}

/// `g` with `plan` applied; `ranges` holds the measured range of every
/// value of [`Plan::measured`].
pub fn quantized_graph(
    g: &Graph,
    plan: &Plan,
    ranges: &HashMap<String, (f32, f32)>,
    scheme: Scheme,
) -> Graph {
    let mut out = g.clone();
    out.nodes.clear();
    let mut w = Writer {
        graph: out,
        renamed: HashMap::new(),
        params: HashMap::new(),
        scheme,
    };
    for value in &plan.activations {
        let range = ranges
            .get(plan.range_source(value))
            .copied()
            .unwrap_or((0.0, 0.0));
        w.params
            .insert(value.clone(), scheme.activations.params(range));
    }
    for (input, concat) in &plan.joined {
        let (own, theirs) = (w.params[input], w.params[concat]);
        if joins(own, theirs) {
            w.params.insert(input.clone(), theirs);
        }
    }
    let planned: HashSet<&String> = plan.activations.iter().collect();
    if planned.contains(&g.input) {
        w.quantize_value(&g.input, &g.input);
    }
    for (i, node) in g.nodes.iter().enumerate() {
        if w.relu_left_to_quantize(node, &planned) {
            let input = w.read_name(&node.inputs[0]);
            w.quantize_value(&node.outputs[0], &input);
            continue;
        }
        let mut node = node.clone();
        let weighted = plan.weighted.contains(&i);
        if weighted {
            w.quantize_weight_inputs(&mut node);
        }
        for input in node.inputs.iter_mut() {
            *input = w.read_name(input);
        }
        let produced = node.outputs[0].clone();
        w.graph.nodes.push(node);
        if planned.contains(&produced) {
            w.quantize_value(&produced, &produced);
        }
    }
    w.graph.prune_consts();
    w.graph
}

/// Whether a Concat input quantized with `own` takes the Concat's `theirs`.
/// Not where it would lose more than one bit (its value also feeds the
/// next layer), nor where it is quantized from 0 (a Relu's, folded into
/// its QuantizeLinear) and the Concat's range reaches below 0: a zero
/// point above 0 could not clamp.
fn joins(own: ActivationParams, theirs: ActivationParams) -> bool {
    let keeps_precision = theirs.scale <= 2.0 * own.scale;
    keeps_precision && (own.zero_point != 0 || theirs.zero_point == 0)
}

struct Writer {
    graph: Graph,
    /// Value -> the DequantizeLinear output its readers now read.
    renamed: HashMap<String, String>,
    params: HashMap<String, ActivationParams>,
    scheme: Scheme,
}

impl Writer {
    /// What a reader of `value` reads now.
    fn read_name(&self, value: &str) -> String {
        self.renamed
            .get(value)
            .cloned()
            .unwrap_or_else(|| value.to_string())
    }

    /// Whether `node` is a Relu whose output is quantized with zero point
    /// 0 in uint8: the QuantizeLinear clamps at 0 exactly as the Relu
    /// would, so the Relu is left out (as ONNX Runtime would drop it).
    fn relu_left_to_quantize(&self, node: &Node, planned: &HashSet<&String>) -> bool {
        node.op == "Relu"
            && self.scheme.activations == ActivationType::U8Asymmetric
            && planned.contains(&node.outputs[0])
            && self.params[&node.outputs[0]].zero_point == 0
    }

    /// Appends `source -> QuantizeLinear -> DequantizeLinear` with the
    /// parameters of `value`, and points `value`'s later readers at the
    /// result.
    fn quantize_value(&mut self, value: &str, source: &str) {
        let p = self.params[value];
        let scale = self
            .graph
            .add_const(&format!("{value}_scale"), Const::f32(&[], vec![p.scale]));
        let zero = match self.scheme.activations {
            ActivationType::U8Asymmetric => Data::U8(vec![p.zero_point as u8]),
            ActivationType::I8Symmetric => Data::I8(vec![p.zero_point as i8]),
        };
        let zero_point = self.graph.add_const(
            &format!("{value}_zero_point"),
            Const {
                dims: vec![],
                data: zero,
            },
        );
        let shape = self.graph.shapes[value].clone();
        let inputs = vec![source.to_string(), scale.clone(), zero_point.clone()];
        let q = self
            .graph
            .add_node("QuantizeLinear", inputs, vec![], shape.clone());
        let dq = self.graph.add_node(
            "DequantizeLinear",
            vec![q, scale, zero_point],
            vec![],
            shape,
        );
        self.renamed.insert(value.to_string(), dq);
    }

    /// Replaces the constant weight (input 1) and bias (input 2) of a Conv
    /// or MatMul by their int8 / int32 forms behind a DequantizeLinear.
    fn quantize_weight_inputs(&mut self, node: &mut Node) {
        let name = node.inputs[1].clone();
        let weight = &self.graph.consts[&name];
        let dims = weight.dims.clone();
        let axis = if node.op == "Conv" { 0 } else { 1 };
        let values = weight
            .floats()
            .expect("planned weights are float constants");
        let q = quantize_weight(values, &dims, axis, self.scheme.weight_limit);
        let channels = q.scales.len();
        let stored = Const {
            dims: dims.clone(),
            data: Data::I8(q.values),
        };
        node.inputs[1] = self.dequantized(&name, stored, (q.scales.clone(), axis));
        let Some(bias_name) = node.inputs.get(2).cloned() else {
            return;
        };
        // Called before the node's inputs are renamed: input 0 is the value.
        let input_scale = self.params[&node.inputs[0]].scale;
        let bias = self.graph.consts[&bias_name]
            .floats()
            .expect("a float bias");
        let (values, scales) = quantize_bias(bias, input_scale, &q.scales);
        let stored = Const::i32(&[channels], values);
        node.inputs[2] = self.dequantized(&bias_name, stored, (scales, 0));
    }

    /// `stored` (int8 or int32, zero point 0) dequantized per channel along
    /// `axis`; returns the float value's name.
    fn dequantized(
        &mut self,
        base: &str,
        stored: Const,
        (scales, axis): (Vec<f32>, usize),
    ) -> String {
        let channels = scales.len();
        let zeros = match stored.data {
            Data::I32(_) => Const::i32(&[channels], vec![0; channels]),
            _ => Const {
                dims: vec![channels],
                data: Data::I8(vec![0; channels]),
            },
        };
        let shape = stored.dims.clone();
        let q = self.graph.add_const(&format!("{base}_quantized"), stored);
        let s = self
            .graph
            .add_const(&format!("{base}_scale"), Const::f32(&[channels], scales));
        let z = self.graph.add_const(&format!("{base}_zero_point"), zeros);
        let attrs = vec![("axis", Attr::Int(axis as i64))];
        self.graph
            .add_node("DequantizeLinear", vec![q, s, z], attrs, shape)
    }
}

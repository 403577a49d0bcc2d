//! BatchNorm folding: in inference a BatchNorm is the per-channel affine map
//! `y = x * s + t` with `s = gamma / sqrt(var + eps)` and
//! `t = beta - mean * s`, so after a convolution it disappears into the
//! convolution's weights (`w * s` per output channel) and bias (`b * s + t`).
//!
//! A BatchNorm is folded when its input comes from a convolution whose
//! output nothing else reads, and whose weight and bias are constants no
//! other node reads (rewriting a shared tensor would change the other
//! reader). Every BatchNorm of the zoo meets this. One that does not is
//! written as that per-channel `Mul` + `Add` with the folded constants:
//! the same arithmetic as ONNX's inference BatchNormalization, so the graph
//! never holds a BatchNormalization node either way.

use crate::graph::{Attr, Const, Graph, Node};

/// What [`fold_batch_norms`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FoldReport {
    /// BatchNorms folded into the convolution before them.
    pub folded: usize,
    /// BatchNorms written as a per-channel multiply-add, by output name.
    pub affine: Vec<String>,
}

/// Folds or rewrites every BatchNormalization node of `g` (see the module doc).
pub fn fold_batch_norms(g: &mut Graph) -> FoldReport {
    let mut report = FoldReport::default();
    let mut i = 0;
    while i < g.nodes.len() {
        if g.nodes[i].op != "BatchNormalization" {
            i += 1;
            continue;
        }
        let bn = g.nodes[i].clone();
        let (scale, shift) = affine_of(g, &bn);
        let conv = foldable_conv(g, &bn);
        g.nodes.remove(i);
        match conv {
            Some(conv) => {
                fold_into_conv(g, conv, &bn, (&scale, &shift));
                report.folded += 1;
            }
            None => {
                let added = insert_affine(g, i, &bn, (scale, shift));
                report.affine.push(bn.outputs[0].clone());
                i += added;
            }
        }
    }
    report
}

/// `(s, t)` of the module doc. The backend makes every BatchNorm parameter
/// a constant of the input's channel count.
fn affine_of(g: &Graph, bn: &Node) -> (Vec<f32>, Vec<f32>) {
    let values = |k: usize| {
        g.consts[&bn.inputs[k]]
            .floats()
            .expect("BatchNorm parameters are float constants")
    };
    let (gamma, beta, mean, var) = (values(1), values(2), values(3), values(4));
    let eps = match bn.attr("epsilon") {
        Some(Attr::Float(eps)) => *eps,
        _ => 1e-5,
    };
    // In f64: the folded constants are then exact to f32 rounding.
    let scale: Vec<f64> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| f64::from(g) / (f64::from(v) + f64::from(eps)).sqrt())
        .collect();
    let shift = (0..scale.len())
        .map(|c| (f64::from(beta[c]) - f64::from(mean[c]) * scale[c]) as f32)
        .collect();
    (scale.into_iter().map(|s| s as f32).collect(), shift)
}

/// The index of the convolution `bn` can be folded into, if any.
fn foldable_conv(g: &Graph, bn: &Node) -> Option<usize> {
    let uses = g.use_counts();
    let once = |name: &String| uses.get(name.as_str()) == Some(&1);
    let x = &bn.inputs[0];
    let p = g.nodes.iter().position(|n| n.outputs.contains(x))?;
    let conv = &g.nodes[p];
    let consts_read_once = conv.inputs[1..]
        .iter()
        .all(|name| g.consts.contains_key(name) && once(name));
    (conv.op == "Conv" && once(x) && consts_read_once).then_some(p)
}

fn fold_into_conv(g: &mut Graph, p: usize, bn: &Node, (scale, shift): (&[f32], &[f32])) {
    let conv = &g.nodes[p];
    let (weight, bias) = (conv.inputs[1].clone(), conv.inputs.get(2).cloned());
    let w = g.consts.get_mut(&weight).expect("checked by foldable_conv");
    let per_channel = w.dims[1..].iter().product::<usize>();
    if let crate::graph::Data::F32(values) = &mut w.data {
        for (c, chunk) in values.chunks_mut(per_channel).enumerate() {
            chunk.iter_mut().for_each(|v| *v *= scale[c]);
        }
    }
    let old_bias = bias.as_ref().and_then(|b| g.consts[b].floats());
    let new_bias: Vec<f32> = (0..scale.len())
        .map(|c| old_bias.map_or(0.0, |b| b[c]) * scale[c] + shift[c])
        .collect();
    let bias_const = Const::f32(&[scale.len()], new_bias);
    match bias {
        Some(b) => {
            g.consts.insert(b, bias_const);
        }
        None => {
            let base = weight
                .strip_suffix("weight")
                .map_or(weight.clone(), |s| format!("{s}bias"));
            let b = g.add_const(&base, bias_const);
            g.nodes[p].inputs.push(b);
        }
    }
    g.nodes[p].outputs[0] = bn.outputs[0].clone();
}

/// Puts `x * s + t` where `bn` was (at index `i`); returns the nodes added.
fn insert_affine(
    g: &mut Graph,
    i: usize,
    bn: &Node,
    (scale, shift): (Vec<f32>, Vec<f32>),
) -> usize {
    let x = &bn.inputs[0];
    let shape = g.shapes[x].clone();
    // Channels on dim 1, broadcast over the dims after it.
    let mut dims = vec![scale.len()];
    dims.extend(std::iter::repeat_n(1, shape.len().saturating_sub(2)));
    let s = g.add_const(
        &format!("{}_scale", bn.outputs[0]),
        Const::f32(&dims, scale),
    );
    let t = g.add_const(
        &format!("{}_shift", bn.outputs[0]),
        Const::f32(&dims, shift),
    );
    let scaled = g.fresh(&format!("{}_scaled", bn.outputs[0]));
    g.shapes.insert(scaled.clone(), shape);
    let mul = Node {
        op: "Mul",
        inputs: vec![x.clone(), s],
        outputs: vec![scaled.clone()],
        attrs: vec![],
    };
    let add = Node {
        op: "Add",
        inputs: vec![scaled, t],
        outputs: bn.outputs.clone(),
        attrs: vec![],
    };
    g.nodes.splice(i..i, [mul, add]);
    2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// input -> Conv(w, no bias) -> BatchNorm -> output; optionally a Relu
    /// also reading the conv output, which blocks folding.
    fn graph(conv_output_shared: bool) -> Graph {
        let mut g = Graph::default();
        g.input = g.fresh("input");
        g.output = g.fresh("logits");
        g.shapes.insert(g.input.clone(), vec![1, 1, 1, 1]);
        let w = g.add_const("conv.weight", Const::f32(&[2, 1, 1, 1], vec![2.0, 3.0]));
        let bn: Vec<String> = [[1.0, 2.0], [0.5, -1.0], [1.0, 0.0], [4.0, 0.25]]
            .into_iter()
            .map(|v| g.add_const("bn", Const::f32(&[2], v.to_vec())))
            .collect();
        let y = g.add_node("Conv", vec![g.input.clone(), w], vec![], vec![1, 2, 1, 1]);
        let mut inputs = vec![y.clone()];
        inputs.extend(bn);
        let attrs = vec![("epsilon", Attr::Float(0.0))];
        let z = g.add_node("BatchNormalization", inputs, attrs, vec![1, 2, 1, 1]);
        g.output = z;
        if conv_output_shared {
            g.add_node("Relu", vec![y], vec![], vec![1, 2, 1, 1]);
        }
        g
    }

    #[test]
    fn a_private_conv_absorbs_the_batch_norm() {
        let mut g = graph(false);
        let report = fold_batch_norms(&mut g);
        assert_eq!(
            report,
            FoldReport {
                folded: 1,
                affine: vec![]
            }
        );
        assert_eq!(g.nodes.len(), 1);
        let conv = &g.nodes[0];
        assert_eq!(conv.outputs[0], g.output);
        // s = gamma / sqrt(var) = [0.5, 4]; t = beta - mean * s = [0, -1].
        assert_eq!(g.consts["conv.weight"].floats().unwrap(), [1.0, 12.0]);
        assert_eq!(conv.inputs[2], "conv.bias");
        assert_eq!(g.consts["conv.bias"].floats().unwrap(), [0.0, -1.0]);
    }

    #[test]
    fn a_shared_conv_output_gets_a_multiply_add() {
        let mut g = graph(true);
        let report = fold_batch_norms(&mut g);
        assert_eq!(report.folded, 0);
        assert_eq!(report.affine.len(), 1);
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op).collect();
        assert_eq!(ops, ["Conv", "Mul", "Add", "Relu"]);
        assert_eq!(g.consts["conv.weight"].floats().unwrap(), [2.0, 3.0]);
        let scale = &g.consts[&g.nodes[1].inputs[1]];
        assert_eq!(
            (scale.dims.as_slice(), scale.floats().unwrap()),
            (&[2, 1, 1][..], &[0.5, 4.0][..])
        );
        assert_eq!(g.nodes[2].outputs[0], g.output);
    }
}

//! A small graph IR between the backend that records it and the ONNX
//! protobuf it becomes: nodes in execution order, named values and constant
//! tensors. Rewrites (BatchNorm folding, pruning) are easy here and awkward
//! on protobuf structs.

use std::collections::{HashMap, HashSet};

use semiclass_models::spec::Shape;

/// The data of a constant tensor (an ONNX initializer).
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    /// Quantized activations' zero points (int8 graphs).
    U8(Vec<u8>),
    /// Quantized weights and their zero points (int8 graphs).
    I8(Vec<i8>),
    /// Quantized biases (int8 graphs).
    I32(Vec<i32>),
}

/// A constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

impl Const {
    pub fn f32(dims: &[usize], values: Vec<f32>) -> Const {
        Const {
            dims: dims.to_vec(),
            data: Data::F32(values),
        }
    }

    pub fn i32(dims: &[usize], values: Vec<i32>) -> Const {
        Const {
            dims: dims.to_vec(),
            data: Data::I32(values),
        }
    }

    pub fn i64(values: Vec<i64>) -> Const {
        Const {
            dims: vec![values.len()],
            data: Data::I64(values),
        }
    }

    /// The values of a float constant.
    pub fn floats(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }
}

/// A node attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// One operator application.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: &'static str,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(&'static str, Attr)>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|(n, _)| *n == name).map(|(_, a)| a)
    }
}

/// The recorded graph. Value names are unique; constants are named values
/// too (their parameter names for weights).
#[derive(Debug, Default, Clone)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub consts: HashMap<String, Const>,
    /// Constants in creation order, so the file is deterministic.
    pub const_order: Vec<String>,
    /// Shape of every value, the batch dimension recorded as 1.
    pub shapes: HashMap<String, Shape>,
    pub input: String,
    pub output: String,
    next: usize,
    taken: HashSet<String>,
}

impl Graph {
    /// A fresh value name: `base` if free, else `base_2`, `base_3`, ...
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        while !self.taken.insert(name.clone()) {
            self.next += 1;
            name = format!("{base}_{}", self.next);
        }
        name
    }

    /// Adds a constant under a fresh name based on `base`.
    pub fn add_const(&mut self, base: &str, c: Const) -> String {
        let name = self.fresh(base);
        self.shapes.insert(name.clone(), c.dims.clone());
        self.consts.insert(name.clone(), c);
        self.const_order.push(name.clone());
        name
    }

    /// Appends a node with one output of `shape`; returns the output's name.
    pub fn add_node(
        &mut self,
        op: &'static str,
        inputs: Vec<String>,
        attrs: Vec<(&'static str, Attr)>,
        shape: Shape,
    ) -> String {
        let out = self.fresh(&format!("{}_{}", op.to_lowercase(), self.nodes.len()));
        self.shapes.insert(out.clone(), shape);
        self.nodes.push(Node {
            op,
            inputs,
            outputs: vec![out.clone()],
            attrs,
        });
        out
    }

    /// How many node inputs (and the graph output) use each value.
    pub fn use_counts(&self) -> HashMap<&str, usize> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let uses = self.nodes.iter().flat_map(|n| &n.inputs);
        for name in uses.chain(std::iter::once(&self.output)) {
            *counts.entry(name.as_str()).or_default() += 1;
        }
        counts
    }

    /// Drops constants that no node reads any more.
    pub fn prune_consts(&mut self) {
        let used: HashSet<&String> = self.nodes.iter().flat_map(|n| &n.inputs).collect();
        self.consts.retain(|name, _| used.contains(name));
        let consts = &self.consts;
        self.const_order.retain(|name| consts.contains_key(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut g = Graph::default();
        assert_eq!(g.fresh("w"), "w");
        assert_ne!(g.fresh("w"), "w");
        let a = g.add_const("w", Const::i64(vec![1]));
        let b = g.add_const("w", Const::i64(vec![1]));
        assert_ne!(a, b);
    }

    #[test]
    fn pruning_keeps_only_read_constants() {
        let mut g = Graph::default();
        let used = g.add_const("used", Const::f32(&[1], vec![1.0]));
        g.add_const("unused", Const::f32(&[1], vec![2.0]));
        g.input = g.fresh("input");
        let out = g.add_node("Add", vec![g.input.clone(), used.clone()], vec![], vec![1]);
        g.output = out;
        g.prune_consts();
        assert_eq!(g.const_order, [used]);
        assert_eq!(g.consts.len(), 1);
    }
}

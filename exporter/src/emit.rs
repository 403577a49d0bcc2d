//! The graph IR as an ONNX `ModelProto`: opset 17, IR version 8, float32
//! NCHW input with a symbolic batch dimension.

use crate::graph::{Attr, Const, Data, Graph, Node};
use crate::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_proto,
    tensor_shape_proto, type_proto,
};

/// The operator set the graph is written in.
pub const OPSET: i64 = 17;
/// ONNX IR version 8 (ONNX 1.10+), the one that goes with opset 17.
pub const IR_VERSION: i64 = 8;
/// Name of the symbolic batch dimension of the input and the output.
pub const BATCH_DIM: &str = "batch";

/// What the protobuf carries besides the graph.
#[derive(Debug, Clone)]
pub struct ModelInfo<'a> {
    /// Graph name, e.g. the timm model name.
    pub name: &'a str,
    pub doc: String,
    /// `[channels, height, width]` of one input image.
    pub input_chw: [usize; 3],
    pub num_classes: usize,
    pub metadata: Vec<(String, String)>,
}

/// `g` as a model file's protobuf.
pub fn model_proto(g: Graph, info: &ModelInfo) -> ModelProto {
    let [c, h, w] = info.input_chw.map(|d| Dim::Fixed(d as i64));
    let input = value_info(&g.input, vec![Dim::Batch, c, h, w]);
    let output = value_info(
        &g.output,
        vec![Dim::Batch, Dim::Fixed(info.num_classes as i64)],
    );
    let mut consts = g.consts;
    let initializer = g
        .const_order
        .iter()
        .map(|name| tensor(name, consts.remove(name).expect("const_order lists consts")))
        .collect();
    let graph = GraphProto {
        name: Some(info.name.to_string()),
        node: g
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| node(i, n))
            .collect(),
        initializer,
        input: vec![input],
        output: vec![output],
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("semiclass".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(info.doc.clone()),
        graph: Some(graph),
        metadata_props: info
            .metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto {
                key: Some(key.clone()),
                value: Some(value.clone()),
            })
            .collect(),
        ..Default::default()
    }
}

fn node(index: usize, n: &Node) -> NodeProto {
    NodeProto {
        name: Some(format!("{}_{index}", n.op)),
        op_type: Some(n.op.to_string()),
        input: n.inputs.clone(),
        output: n.outputs.clone(),
        attribute: n.attrs.iter().map(|(name, a)| attribute(name, a)).collect(),
        ..Default::default()
    }
}

fn attribute(name: &str, a: &Attr) -> AttributeProto {
    use attribute_proto::AttributeType;
    let mut p = AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    match a {
        Attr::Int(i) => {
            p.i = Some(*i);
            p.r#type = Some(AttributeType::Int as i32);
        }
        Attr::Float(f) => {
            p.f = Some(*f);
            p.r#type = Some(AttributeType::Float as i32);
        }
        Attr::Ints(v) => {
            p.ints = v.clone();
            p.r#type = Some(AttributeType::Ints as i32);
        }
    }
    p
}

/// An initializer; values little-endian in `raw_data`, as ONNX requires.
fn tensor(name: &str, c: Const) -> TensorProto {
    use tensor_proto::DataType;
    let (data_type, raw) = match c.data {
        Data::F32(v) => (DataType::Float, le_bytes(&v, |x| x.to_le_bytes())),
        Data::I64(v) => (DataType::Int64, le_bytes(&v, |x| x.to_le_bytes())),
        Data::U8(v) => (DataType::Uint8, v),
        Data::I8(v) => (DataType::Int8, le_bytes(&v, |x| x.to_le_bytes())),
        Data::I32(v) => (DataType::Int32, le_bytes(&v, |x| x.to_le_bytes())),
    };
    TensorProto {
        name: Some(name.to_string()),
        dims: c.dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(data_type as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn le_bytes<T: Copy, const N: usize>(values: &[T], bytes: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&x| bytes(x)).collect()
}

enum Dim {
    Batch,
    Fixed(i64),
}

/// A float32 tensor value of the given shape.
fn value_info(name: &str, dims: Vec<Dim>) -> ValueInfoProto {
    use tensor_shape_proto::{Dimension, dimension};
    let dim = dims
        .into_iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Batch => dimension::Value::DimParam(BATCH_DIM.into()),
                Dim::Fixed(v) => dimension::Value::DimValue(v),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: Some(tensor_proto::DataType::Float as i32),
        shape: Some(TensorShapeProto { dim }),
    };
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Adds `names` as extra float outputs of unknown shape (ONNX Runtime
/// infers them), so a run returns these intermediate values too.
pub fn add_outputs(proto: &mut ModelProto, names: &[String]) {
    let graph = proto.graph.as_mut().expect("model_proto writes a graph");
    for name in names {
        let tensor = type_proto::Tensor {
            elem_type: Some(tensor_proto::DataType::Float as i32),
            shape: None,
        };
        graph.output.push(ValueInfoProto {
            name: Some(name.clone()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(tensor)),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
}

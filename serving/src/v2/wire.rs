//! The Open Inference Protocol's HTTP body: a JSON document, optionally
//! followed by raw tensor bytes (the binary-data extension: the header
//! `Inference-Header-Content-Length` says where the JSON ends, and each
//! tensor sent as bytes says its size in `parameters.binary_data_size`).

use std::collections::BTreeMap;

use axum::body::Bytes;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The header that splits a body into its JSON and its binary part.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// `POST /v2/models/{name}/infer`'s JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = V2InferRequest)]
pub struct InferRequest {
    /// Echoed in the answer.
    pub id: Option<String>,
    /// `binary_data_output: bool`: every output as bytes after the JSON.
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    /// Exactly one: `image` (BYTES, image files, shape [n]) or the model's
    /// FP32 input ([n, 3, size, size], preprocessed).
    pub inputs: Vec<RequestInput>,
    /// The outputs wanted (all when absent).
    pub outputs: Option<Vec<RequestedOutput>>,
}

/// One input tensor of a request.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = V2Tensor)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    /// `BYTES` or `FP32`.
    pub datatype: String,
    /// `binary_data_size`: the tensor's bytes follow the JSON (binary-data
    /// extension).
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    /// The elements, flat or nested; BYTES elements as base64 text.
    pub data: Option<Value>,
}

/// An output the caller asks for.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = V2RequestedOutput)]
pub struct RequestedOutput {
    /// `probabilities`.
    pub name: String,
    /// `binary_data: bool`; `classification: k`, the k best as
    /// `"score:index:label"`.
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
}

impl RequestedOutput {
    /// Triton's classification extension: the `k` best classes as
    /// `"score:index:label"` strings instead of the tensor.
    pub fn classification(&self) -> Option<u64> {
        self.parameters
            .get("classification")
            .and_then(Value::as_u64)
    }

    /// Whether the tensor goes after the JSON as bytes (`default`: the
    /// request's `binary_data_output`).
    pub fn binary(&self, default: bool) -> bool {
        self.parameters
            .get("binary_data")
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }
}

/// An input's elements, decoded.
#[derive(Debug, PartialEq)]
pub enum Elements {
    /// `BYTES`: one byte string per element.
    Bytes(Vec<Bytes>),
    Fp32(Vec<f32>),
}

/// A request whose JSON is parsed and whose inputs carry their elements.
#[derive(Debug)]
pub struct Parsed {
    pub request: InferRequest,
    /// One per `request.inputs`, in order.
    pub elements: Vec<Elements>,
}

/// Splits `body` at `header_length` (when the binary extension is used),
/// parses the JSON and decodes every input's elements.
pub fn parse(body: &Bytes, header_length: Option<usize>) -> Result<Parsed, String> {
    let json_end = header_length.unwrap_or(body.len());
    if json_end > body.len() {
        return Err(format!(
            "Inference-Header-Content-Length {json_end} is longer than the body ({} bytes)",
            body.len()
        ));
    }
    let request: InferRequest = serde_json::from_slice(&body[..json_end])
        .map_err(|e| format!("the request's JSON: {e}"))?;
    let mut binary = body.slice(json_end..);
    let mut elements = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        elements.push(input_elements(input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(format!(
            "{} bytes after the last binary input: binary_data_size does not add up",
            binary.len()
        ));
    }
    Ok(Parsed { request, elements })
}

/// The elements of `input`, taken from the front of `binary` when it was
/// sent as bytes, else from its JSON `data`.
fn input_elements(input: &RequestInput, binary: &mut Bytes) -> Result<Elements, String> {
    let name = &input.name;
    let count = element_count(&input.shape).ok_or_else(|| {
        format!(
            "input {name:?}: shape {:?} is not a tensor shape",
            input.shape
        )
    })?;
    let size = input
        .parameters
        .get("binary_data_size")
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| format!("input {name:?}: binary_data_size must be a number"))
        })
        .transpose()?;
    let elements = match (input.datatype.as_str(), size) {
        ("BYTES", Some(size)) => Elements::Bytes(byte_strings(take(binary, size, name)?, name)?),
        ("FP32", Some(size)) => Elements::Fp32(le_floats(&take(binary, size, name)?, name)?),
        ("BYTES", None) => Elements::Bytes(json_base64(input.data.as_ref(), name)?),
        ("FP32", None) => Elements::Fp32(json_floats(input.data.as_ref(), name)?),
        (other, _) => {
            return Err(format!(
                "input {name:?}: datatype {other} is not accepted (BYTES for image files, FP32 for preprocessed tensors)"
            ));
        }
    };
    let found = match &elements {
        Elements::Bytes(v) => v.len(),
        Elements::Fp32(v) => v.len(),
    };
    if found != count {
        return Err(format!(
            "input {name:?}: shape {:?} holds {count} elements, the data {found}",
            input.shape
        ));
    }
    Ok(elements)
}

/// The product of `shape`; `None` for a negative dimension or an overflow.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    })
}

fn take(binary: &mut Bytes, size: u64, name: &str) -> Result<Bytes, String> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > binary.len() {
        return Err(format!(
            "input {name:?}: binary_data_size {size} but only {} bytes are left in the body",
            binary.len()
        ));
    }
    Ok(binary.split_to(size))
}

/// `BYTES` elements as the protocol sends them: each a 4-byte
/// little-endian length, then that many bytes.
fn byte_strings(mut data: Bytes, name: &str) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 4 {
            return Err(format!(
                "input {name:?}: a BYTES element's 4-byte length is cut short"
            ));
        }
        let length = u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) as usize;
        if length > data.len() - 4 {
            return Err(format!(
                "input {name:?}: a BYTES element says {length} bytes, {} are left",
                data.len() - 4
            ));
        }
        let _ = data.split_to(4);
        out.push(data.split_to(length));
    }
    Ok(out)
}

fn le_floats(data: &[u8], name: &str) -> Result<Vec<f32>, String> {
    if !data.len().is_multiple_of(4) {
        return Err(format!(
            "input {name:?}: {} bytes are not whole FP32 values",
            data.len()
        ));
    }
    Ok(data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect())
}

/// JSON `data`, flat or nested, in row-major order.
fn json_leaves<'a>(data: Option<&'a Value>, name: &str) -> Result<Vec<&'a Value>, String> {
    let data = data.ok_or_else(|| {
        format!("input {name:?}: no data (neither JSON \"data\" nor binary_data_size)")
    })?;
    let mut leaves = Vec::new();
    let mut stack = vec![data];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.iter().rev()),
            leaf => leaves.push(leaf),
        }
    }
    Ok(leaves)
}

fn json_floats(data: Option<&Value>, name: &str) -> Result<Vec<f32>, String> {
    json_leaves(data, name)?
        .into_iter()
        .map(|v| {
            v.as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| format!("input {name:?}: {v} is not a number"))
        })
        .collect()
}

/// JSON cannot carry raw bytes: a `BYTES` image in JSON is base64 text.
fn json_base64(data: Option<&Value>, name: &str) -> Result<Vec<Bytes>, String> {
    json_leaves(data, name)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let text = v
                .as_str()
                .ok_or_else(|| format!("input {name:?}: element {i} is not a string"))?;
            BASE64.decode(text).map(Bytes::from).map_err(|e| {
                format!(
                    "input {name:?}: element {i} is not base64 ({e}); send image files as binary data, or base64 in JSON"
                )
            })
        })
        .collect()
}

/// `BYTES` elements as the protocol writes them: each a 4-byte
/// little-endian length, then the bytes.
pub fn length_prefixed<T: AsRef<[u8]>>(items: &[T]) -> Vec<u8> {
    items
        .iter()
        .flat_map(|item| {
            let item = item.as_ref();
            (item.len() as u32)
                .to_le_bytes()
                .into_iter()
                .chain(item.iter().copied())
        })
        .collect()
}

/// One output tensor of the answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V2Output)]
pub struct ResponseOutput {
    pub name: String,
    /// `FP32`, or `BYTES` for a classification.
    pub datatype: &'static str,
    pub shape: Vec<usize>,
    /// `binary_data_size` when the output follows the JSON as bytes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Value>,
    /// The elements, flat, when sent as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// An output's values before they are written as JSON or as bytes.
pub enum OutputData {
    Fp32(Vec<f32>),
    Bytes(Vec<String>),
}

impl OutputData {
    /// The output as the answer's JSON holds it, and its bytes when it
    /// goes after the JSON.
    pub fn encode(
        self,
        name: &str,
        shape: Vec<usize>,
        binary: bool,
    ) -> (ResponseOutput, Option<Vec<u8>>) {
        let datatype = match self {
            OutputData::Fp32(_) => "FP32",
            OutputData::Bytes(_) => "BYTES",
        };
        let mut output = ResponseOutput {
            name: name.to_string(),
            datatype,
            shape,
            parameters: BTreeMap::new(),
            data: None,
        };
        if !binary {
            output.data = Some(match self {
                OutputData::Fp32(v) => serde_json::json!(v),
                OutputData::Bytes(v) => serde_json::json!(v),
            });
            return (output, None);
        }
        let bytes: Vec<u8> = match self {
            OutputData::Fp32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            OutputData::Bytes(v) => length_prefixed(&v),
        };
        output
            .parameters
            .insert("binary_data_size".into(), bytes.len().into());
        (output, Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_binary(json: &str, tail: &[u8]) -> (Bytes, Option<usize>) {
        let mut body = json.as_bytes().to_vec();
        body.extend_from_slice(tail);
        (Bytes::from(body), Some(json.len()))
    }

    #[test]
    fn binary_inputs_are_cut_from_the_body_in_order() {
        let images = length_prefixed(&[&b"first"[..], &b"second!"[..]]);
        let floats: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let json = format!(
            r#"{{"inputs":[{{"name":"image","shape":[2],"datatype":"BYTES","parameters":{{"binary_data_size":{}}}}},{{"name":"x","shape":[1,2],"datatype":"FP32","parameters":{{"binary_data_size":8}}}}]}}"#,
            images.len()
        );
        let (body, length) = with_binary(&json, &[images, floats].concat());
        let parsed = parse(&body, length).unwrap();
        assert_eq!(
            parsed.elements,
            vec![
                Elements::Bytes(vec![Bytes::from("first"), Bytes::from("second!")]),
                Elements::Fp32(vec![1.5, -2.0]),
            ]
        );
    }

    #[test]
    fn json_inputs_may_be_nested_and_images_are_base64() {
        let body = Bytes::from(
            r#"{"id":"7","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]},{"name":"image","shape":[1],"datatype":"BYTES","data":["aGk="]}]}"#,
        );
        let parsed = parse(&body, None).unwrap();
        assert_eq!(parsed.request.id.as_deref(), Some("7"));
        assert_eq!(parsed.elements[0], Elements::Fp32(vec![1.0, 2.0, 3.0, 4.5]));
        assert_eq!(parsed.elements[1], Elements::Bytes(vec![Bytes::from("hi")]));
    }

    #[test]
    fn sizes_that_do_not_add_up_are_refused_with_the_input_named() {
        let cases = [
            (
                r#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
                None,
                "shape [3] holds 3 elements, the data 2",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#,
                Some(&[0u8; 4][..]),
                "binary_data_size 8 but only 4 bytes",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#,
                Some(&[0u8; 6][..]),
                "2 bytes after the last binary input",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[1]}]}"#,
                None,
                "datatype INT64 is not accepted",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#,
                None,
                "is not a tensor shape",
            ),
        ];
        for (json, tail, expected) in cases {
            let (body, length) = match tail {
                Some(tail) => with_binary(json, tail),
                None => (Bytes::from(json.to_string()), None),
            };
            let err = parse(&body, length).unwrap_err();
            assert!(err.contains(expected), "{json}: {err}");
        }
        let image = length_prefixed(&[b"abc"]);
        let cut = &image[..5];
        let json = r#"{"inputs":[{"name":"image","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":5}}]}"#;
        let (body, length) = with_binary(json, cut);
        let err = parse(&body, length).unwrap_err();
        assert!(err.contains("says 3 bytes, 1 are left"), "{err}");
    }

    #[test]
    fn outputs_are_json_or_length_prefixed_bytes() {
        let (json, bytes) = OutputData::Fp32(vec![0.25, 0.75]).encode("p", vec![1, 2], false);
        assert_eq!(
            serde_json::to_value(&json).unwrap(),
            serde_json::json!({"name": "p", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]})
        );
        assert!(bytes.is_none());
        let (json, bytes) =
            OutputData::Bytes(vec!["0.75:1:cat".into()]).encode("p", vec![1, 1], true);
        let bytes = bytes.unwrap();
        assert_eq!(json.parameters["binary_data_size"], serde_json::json!(14));
        assert_eq!(&bytes[..4], &10u32.to_le_bytes());
        assert_eq!(&bytes[4..], b"0.75:1:cat");
    }
}

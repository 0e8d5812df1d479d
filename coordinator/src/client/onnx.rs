//! A kept model as an ONNX file (opset 13): input `x` `[N, 16]` float32, already standard-scaled;
//! output `logits` `[N, 5]`, the class scores after MASE's final ReLU. The graph is MASE's layers
//! in inference mode: `BatchNormalization` (running statistics, ε = 1e-5) and `Relu`, then per
//! stage `Gemm` (`transB = 1`, PyTorch's `[out, in]` weights), an optional `BatchNormalization`
//! and `Relu`. Initializers carry MASE's `state_dict` names.
//!
//! The messages below are the subset of ONNX's `onnx.proto` this needs, with its field numbers,
//! encoded by prost (the protobuf crate the gRPC side already uses).

use jetsweep_proto::model::Architecture;
use jetsweep_proto::weights::{ModelWeights, NamedTensor, TensorValues};
use prost::Message;

/// The ONNX IR version written (IR 8 carries opset 13 and is read by every current runtime).
const IR_VERSION: i64 = 8;
/// The default domain's operator set.
pub const OPSET: i64 = 13;
/// BatchNorm1d's ε, as MASE and jetsweep train with.
const EPSILON: f32 = 1e-5;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(string, tag = "6")]
    doc_string: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

/// `AttributeProto.AttributeType`: FLOAT = 1, INT = 2.
#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(float, optional, tag = "2")]
    f: Option<f32>,
    #[prost(int64, optional, tag = "3")]
    i: Option<i64>,
    #[prost(int32, tag = "20")]
    r#type: i32,
}

/// `TensorProto.DataType`: FLOAT = 1.
#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorType>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorType {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

const FLOAT: i32 = 1;

/// A `[N, width]` float32 value.
fn batch_of(name: &str, width: usize) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension {
                            dim_value: None,
                            dim_param: Some("N".into()),
                        },
                        Dimension {
                            dim_value: Some(width as i64),
                            dim_param: None,
                        },
                    ],
                }),
            }),
        }),
    }
}

fn node(op: &str, name: &str, input: Vec<String>, output: &str) -> NodeProto {
    NodeProto {
        input,
        output: vec![output.into()],
        name: name.into(),
        op_type: op.into(),
        attribute: Vec::new(),
    }
}

/// The ONNX file of `weights` (checked against their model), with `metadata` as its properties.
pub fn model_file(
    weights: &ModelWeights,
    metadata: &[(String, String)],
) -> Result<Vec<u8>, String> {
    let arch: Architecture = weights
        .model
        .parse()
        .map_err(|e| format!("model {}: {e}", weights.model))?;
    let dict = weights.state_dict(&arch)?;
    let tensor = |name: &str| -> Result<&NamedTensor, String> {
        dict.iter()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("no tensor {name}"))
    };
    let mut initializer = Vec::new();
    let mut nodes = Vec::new();
    let mut add = |t: &NamedTensor| -> Result<String, String> {
        let TensorValues::F32(values) = &t.values else {
            return Err(format!("{} is not float32", t.name));
        };
        initializer.push(TensorProto {
            dims: t.shape.iter().map(|d| *d as i64).collect(),
            data_type: FLOAT,
            float_data: values.clone(),
            name: t.name.clone(),
        });
        Ok(t.name.clone())
    };
    let prefix = jetsweep_proto::weights::container(&arch);
    let mut current = "x".to_string();
    let norm = |index: usize,
                current: &mut String,
                nodes: &mut Vec<NodeProto>,
                add: &mut dyn FnMut(&NamedTensor) -> Result<String, String>|
     -> Result<(), String> {
        let mut inputs = vec![current.clone()];
        for field in ["weight", "bias", "running_mean", "running_var"] {
            inputs.push(add(tensor(&format!("{prefix}.{index}.{field}"))?)?);
        }
        let out = format!("{prefix}.{index}");
        let mut n = node("BatchNormalization", &out, inputs, &out);
        n.attribute.push(AttributeProto {
            name: "epsilon".into(),
            f: Some(EPSILON),
            i: None,
            r#type: 1,
        });
        nodes.push(n);
        *current = out;
        Ok(())
    };
    let relu = |index: usize, current: &mut String, nodes: &mut Vec<NodeProto>, last: bool| {
        let out = if last {
            "logits".to_string()
        } else {
            format!("{prefix}.{index}")
        };
        nodes.push(node(
            "Relu",
            &format!("{prefix}.{index}"),
            vec![current.clone()],
            &out,
        ));
        *current = out;
    };
    norm(0, &mut current, &mut nodes, &mut add)?;
    relu(1, &mut current, &mut nodes, false);
    let mut index = 2;
    for (s, stage) in arch.stages.iter().enumerate() {
        let w = add(tensor(&format!("{prefix}.{index}.weight"))?)?;
        let b = add(tensor(&format!("{prefix}.{index}.bias"))?)?;
        let out = format!("{prefix}.{index}");
        let mut gemm = node("Gemm", &out, vec![current.clone(), w, b], &out);
        gemm.attribute.push(AttributeProto {
            name: "transB".into(),
            f: None,
            i: Some(1),
            r#type: 2,
        });
        nodes.push(gemm);
        current = out;
        index += 1;
        if stage.norm {
            norm(index, &mut current, &mut nodes, &mut add)?;
            index += 1;
        }
        relu(index, &mut current, &mut nodes, s + 1 == arch.stages.len());
        index += 1;
    }
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "jetsweep".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{}: x [N,16] standard-scaled jets -> logits [N,5] after MASE's final ReLU (g, q, W, Z, t)",
            arch.name
        ),
        graph: Some(GraphProto {
            node: nodes,
            name: arch.name.clone(),
            initializer,
            input: vec![batch_of("x", jetsweep_data::NUM_FEATURES)],
            output: vec![batch_of("logits", jetsweep_data::NUM_CLASSES)],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
    };
    Ok(model.encode_to_vec())
}

//! The `MLmodel` file: which flavors a model has and what its signature says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What serving needs from an `MLmodel` file.
#[derive(Debug, Clone)]
pub struct MlModel {
    /// Flavor name → its settings (`onnx`, `python_function`, `sklearn`, ...).
    pub flavors: BTreeMap<String, serde_yaml_ng::Value>,
    /// Column or tensor specs of the inputs, when the model was logged with a signature.
    pub inputs: Vec<ColumnOrTensor>,
    pub outputs: Vec<ColumnOrTensor>,
    /// `serving_input_example.json` (or similar), relative to the model directory.
    pub serving_input_path: Option<String>,
    pub model_id: Option<String>,
}

/// One entry of an MLflow signature.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnOrTensor {
    /// A dataframe column: `{"type": "double", "name": "x"}`.
    Column { name: Option<String>, ty: String },
    /// A tensor: `{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}`.
    Tensor {
        name: Option<String>,
        dtype: String,
        shape: Vec<i64>,
    },
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    flavors: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    signature: Option<RawSignature>,
    #[serde(default)]
    saved_input_example_info: Option<RawExample>,
    #[serde(default)]
    model_id: Option<String>,
}

#[derive(Deserialize)]
struct RawSignature {
    inputs: Option<String>,
    outputs: Option<String>,
}

#[derive(Deserialize)]
struct RawExample {
    serving_input_path: Option<String>,
}

#[derive(Deserialize)]
struct RawSpec {
    #[serde(rename = "type")]
    ty: String,
    name: Option<String>,
    #[serde(rename = "tensor-spec")]
    tensor_spec: Option<RawTensorSpec>,
}

#[derive(Deserialize)]
struct RawTensorSpec {
    dtype: String,
    shape: Vec<i64>,
}

impl MlModel {
    /// Reads `<dir>/MLmodel`.
    pub fn read(dir: &Path) -> Result<MlModel, String> {
        let path = dir.join("MLmodel");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the text of an `MLmodel` file.
    pub fn parse(text: &str) -> Result<MlModel, String> {
        let raw: Raw =
            serde_yaml_ng::from_str(text).map_err(|e| format!("invalid MLmodel: {e}"))?;
        let (inputs, outputs) = match raw.signature {
            Some(sig) => (
                specs(sig.inputs.as_deref())?,
                specs(sig.outputs.as_deref())?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(MlModel {
            flavors: raw.flavors,
            inputs,
            outputs,
            serving_input_path: raw
                .saved_input_example_info
                .and_then(|e| e.serving_input_path),
            model_id: raw.model_id,
        })
    }

    /// The file an `onnx` flavor points at, if the model has one.
    pub fn onnx_file(&self, dir: &Path) -> Option<PathBuf> {
        let data = self.flavors.get("onnx")?.get("data")?.as_str()?;
        Some(dir.join(data))
    }

    /// The flavor names, for messages.
    pub fn flavor_names(&self) -> Vec<&str> {
        self.flavors.keys().map(String::as_str).collect()
    }
}

fn specs(json: Option<&str>) -> Result<Vec<ColumnOrTensor>, String> {
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let raw: Vec<RawSpec> =
        serde_json::from_str(json).map_err(|e| format!("invalid signature: {e}"))?;
    Ok(raw
        .into_iter()
        .map(|s| match s.tensor_spec {
            Some(t) if s.ty == "tensor" => ColumnOrTensor::Tensor {
                name: s.name,
                dtype: t.dtype,
                shape: t.shape,
            },
            _ => ColumnOrTensor::Column {
                name: s.name,
                ty: s.ty,
            },
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const ONNX: &str = r#"
artifact_path: model
flavors:
  onnx:
    code: null
    data: model.onnx
    onnx_version: 1.17.0
    providers: [CPUExecutionProvider]
  python_function:
    data: model.onnx
    loader_module: mlflow.onnx
    python_version: 3.11.7
mlflow_version: 3.17.2
model_id: m-0123
saved_input_example_info:
  artifact_path: input_example.json
  serving_input_path: serving_input_example.json
  type: ndarray
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}, "name": "label"}]'
  params: null
"#;

    #[test]
    fn reads_flavors_signature_and_example() {
        let m = MlModel::parse(ONNX).unwrap();
        assert_eq!(m.flavor_names(), vec!["onnx", "python_function"]);
        assert_eq!(
            m.onnx_file(Path::new("/m")),
            Some(PathBuf::from("/m/model.onnx"))
        );
        assert_eq!(
            m.inputs,
            vec![ColumnOrTensor::Tensor {
                name: None,
                dtype: "float32".into(),
                shape: vec![-1, 4]
            }]
        );
        assert!(
            matches!(&m.outputs[0], ColumnOrTensor::Tensor { name: Some(n), .. } if n == "label")
        );
        assert_eq!(
            m.serving_input_path.as_deref(),
            Some("serving_input_example.json")
        );
        assert_eq!(m.model_id.as_deref(), Some("m-0123"));
    }

    #[test]
    fn column_signatures_and_garbage() {
        let m = MlModel::parse(
            "flavors: {sklearn: {}}\nsignature:\n  inputs: '[{\"type\": \"double\", \"name\": \"x\"}]'\n",
        )
        .unwrap();
        assert_eq!(
            m.inputs,
            vec![ColumnOrTensor::Column {
                name: Some("x".into()),
                ty: "double".into()
            }]
        );
        assert!(m.onnx_file(Path::new("/m")).is_none());
        assert!(MlModel::parse("flavors: [1, 2").is_err());
        assert!(MlModel::parse("signature:\n  inputs: 'not json'\n").is_err());
    }
}

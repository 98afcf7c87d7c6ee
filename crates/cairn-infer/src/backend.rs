//! The trait an inference engine implements.
//!
//! Deliberately synchronous and `&mut self`: an engine instance is owned by exactly one
//! batching thread, so engines whose sessions are not `Sync` (onnxruntime's `run` takes
//! `&mut self`) need no locks, and nothing here can run on an async worker.

use crate::tensor::{DataType, Tensor};

/// One input or output as the model declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    /// Declared dimensions; `-1` where the size is dynamic.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Whether a concrete shape fits the declared one (same rank, fixed sizes equal).
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        self.shape.len() == shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(want, got)| *want < 0 || usize::try_from(*want) == Ok(*got))
    }
}

/// A model's declared inputs and outputs.
///
/// A signature without inputs is *open*: the model declares nothing (a pyfunc model logged
/// without a signature), and requests' inputs reach it as they come.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelSignature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl ModelSignature {
    /// Whether the model declares no inputs, so any are passed through unchecked.
    pub fn is_open(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Whether requests can be stacked along the first dimension: every input and output
    /// has a dynamic first dimension.
    pub fn batchable(&self) -> bool {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .all(|s| s.shape.first().is_some_and(|d| *d < 0))
    }
}

/// Why an engine failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The engine could not be created (library missing, model unreadable, unsupported op).
    #[error("{0}")]
    Load(String),
    /// The inputs were well-formed for the signature but the engine refused them.
    #[error("{0}")]
    Inference(String),
    /// The call did not finish in the time allowed; the engine was reset.
    #[error("{0}")]
    Timeout(String),
}

/// An inference engine instance: one loaded model, used by one thread at a time.
pub trait Backend: Send {
    /// The engine's name, for logs and metrics (`onnxruntime`, `tract`, `python`).
    fn engine(&self) -> &'static str;

    /// The inputs and outputs as the loaded model declares them.
    fn signature(&self) -> &ModelSignature;

    /// Runs the model. Inputs are in signature order, already checked against it.
    fn infer(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, BackendError>;

    /// Runs the model with inference parameters (a JSON object, as MLflow's `params`).
    /// Engines whose models take no parameters ignore them.
    fn infer_with_params(
        &mut self,
        inputs: &[Tensor],
        params: Option<&str>,
    ) -> Result<Vec<Tensor>, BackendError> {
        let _ = params;
        self.infer(inputs)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(shape: Vec<i64>) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape,
        }
    }

    #[test]
    fn shape_acceptance() {
        assert!(spec(vec![-1, 4]).accepts_shape(&[7, 4]));
        assert!(!spec(vec![-1, 4]).accepts_shape(&[7, 3]));
        assert!(!spec(vec![-1, 4]).accepts_shape(&[7]));
        assert!(spec(vec![]).accepts_shape(&[]));
    }

    #[test]
    fn batchable_needs_dynamic_first_dims() {
        let sig = ModelSignature {
            inputs: vec![spec(vec![-1, 4])],
            outputs: vec![spec(vec![-1])],
        };
        assert!(sig.batchable());
        let fixed = ModelSignature {
            inputs: vec![spec(vec![1, 4])],
            outputs: vec![spec(vec![-1])],
        };
        assert!(!fixed.batchable());
    }
}

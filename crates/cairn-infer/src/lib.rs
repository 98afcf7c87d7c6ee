//! Inference core, independent of HTTP and of any engine.
//!
//! `tensor` is the one in-memory tensor every protocol decodes into and every engine
//! consumes; `backend` is the small synchronous trait an engine implements; `batch` is the
//! dynamic batching queue that feeds engines on their own OS threads.

pub mod backend;
pub mod batch;
pub mod tensor;

pub use backend::{Backend, BackendError, ModelSignature, TensorSpec};
pub use batch::{BatchConfig, Batcher, InferError, Reply};
pub use tensor::{DataType, Tensor, TensorData, TensorError};

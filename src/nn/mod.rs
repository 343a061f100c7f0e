//! A small reverse-mode autodiff tape with tensor kernels on the CPU and CUDA, the optimisers and
//! the model files that the learned samplers and the spectral reconstruction train with.

pub mod bench;
pub mod cpu;
pub mod cuda;
pub mod kernels;
pub mod layers;
pub mod masks;
pub mod op;
pub mod ops;
pub mod tensor;

pub use kernels::{Binary, ConvMode, Unary};
pub use tensor::{Ctx, Real, Tensor};
pub mod optim;
pub mod params;
pub mod safetensors;
pub mod tape;

pub use op::{Backward, Op};
pub use optim::{Adam, Schedule};
pub use params::ParamStore;
pub use tape::{Grads, Tape, Var};

//! The layers of a BitNet b1.58 transformer, each a Burn `Module` generic over a [`TernaryBackend`]
//! (`bitnet_kernels_cubecl::TernaryBackend`): [`BitLinear`], [`RmsNorm`], NEOX [`Rope`], grouped-query
//! [`Attention`] over a [`KvCache`], the gated [`FeedForward`], the [`Block`] that joins them with residuals, and
//! the whole [`BitNet`].

mod attention;
mod bit_linear;
mod block;
mod cache;
mod embedding;
mod ffn;
mod head;
mod model;
mod norm;
mod rope;

pub use attention::{Attention, AttentionConfig};
pub(crate) use bit_linear::absmean_ternarize;
pub use bit_linear::{forward_shared, ActQuant, BitLinear, BitLinearConfig, Projection};
pub use block::Block;
pub use cache::{KvCache, LayerCache};
pub use embedding::{Embedding, EncodedRows, RowTable};
pub use ffn::{FeedForward, FeedForwardConfig, FfnOutput};
pub use head::{HeadMode, Int8Head};
pub use model::{BitNet, BitNetModel, UBATCH};
pub use norm::{Normed, RmsNorm, RmsNormConfig};
pub use rope::Rope;

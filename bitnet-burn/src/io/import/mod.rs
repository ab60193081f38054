//! Importers: GGUF files (every type bitnet-gguf reads) and transformers checkpoints, into one packed layout.

mod gguf;
mod hf;

pub(crate) use hf::hf_name;
pub use hf::HfCheckpoint;

use std::path::Path;
use std::sync::Arc;

use bitnet_gguf::{GgufFile, ModelConfig, Overrides, RopeType};
use bitnet_kernels_cubecl::{CacheType, TernaryBackend};

use crate::error::LoadError;
use crate::nn::Attention;
use crate::nn::BitLinear;
use crate::nn::FeedForward;
use crate::nn::RmsNorm;
use crate::nn::{BitNet, BitNetModel, Block, Embedding, HeadMode, RowTable};
use rayon::prelude::*;

/// Loads a model from a `.gguf` file or a transformers checkpoint directory, with the default options (the
/// int8 head: [`HeadMode`]).
pub fn load<B: TernaryBackend>(
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<BitNet<B>, LoadError> {
    load_with_progress(path, device, &LoadOptions::default(), |_| {})
}

/// What a load may change from what the file says.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Hyper-parameters to override.
    pub overrides: Overrides,
    /// How the output head is stored and computed (chosen at load, so the head not chosen is never built).
    pub head: HeadMode,
    /// What the model's KV caches store.
    pub cache: CacheType,
}

impl LoadOptions {
    /// The loaded weights as a model with these options' head and cache type.
    fn apply<B: TernaryBackend>(
        &self,
        model: BitNetModel<B>,
        config: ModelConfig,
        device: &B::Device,
    ) -> BitNet<B> {
        let mut net = BitNet::with_head(model, config, self.head, device);
        net.set_cache_type(self.cache);
        net
    }

    /// The default options with the head computed as `head` says.
    pub fn head(head: HeadMode) -> Self {
        Self {
            head,
            ..Self::default()
        }
    }
}

/// How far loading has got: `done` of `total` parts (the embedding, each layer, the output norm and head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadProgress {
    /// Parts loaded.
    pub done: usize,
    /// Parts in all.
    pub total: usize,
}

/// [`load`] with `options`, calling `progress` after each part (for a progress bar on large files).
pub fn load_with_progress<B: TernaryBackend>(
    path: impl AsRef<Path>,
    device: &B::Device,
    options: &LoadOptions,
    mut progress: impl FnMut(LoadProgress),
) -> Result<BitNet<B>, LoadError> {
    let path = path.as_ref();
    let (model, config) = if path.is_dir() {
        let ckpt = HfCheckpoint::open(path)?;
        let config = options.overrides.apply(ckpt.model_config()?);
        build(&ckpt, config, device, &mut progress)?
    } else {
        return load_gguf(Arc::new(GgufFile::open(path)?), device, options, progress);
    };
    Ok(options.apply(model, config, device))
}

/// [`load_with_progress`] from a GGUF file already opened (mapped, or read into memory where there is no file
/// system: the browser). Shared: the embedding's rows are read from the file for as long as the model lives.
pub fn load_gguf<B: TernaryBackend>(
    file: Arc<GgufFile>,
    device: &B::Device,
    options: &LoadOptions,
    mut progress: impl FnMut(LoadProgress),
) -> Result<BitNet<B>, LoadError> {
    let config = ModelConfig::from_gguf_with(&file, &options.overrides)?;
    let (model, config) = build(&file, config, device, &mut progress)?;
    Ok(options.apply(model, config, device))
}

/// A ternary matrix `[out, in]` decoded and packed on the host, ready for [`BitLinear::from_packed`].
pub(crate) struct PackedTernary {
    words: Vec<u32>,
    scales: Vec<f32>,
    out: usize,
    blocks: usize,
}

impl PackedTernary {
    /// Reorders the rows of each of `heads` heads from the adjacent-pair order of llama.cpp's `llama` files
    /// (row `2i + j` of a head) to the rotate-half order the model's RoPE computes (row `j · d/2 + i`): the inverse
    /// of the permutation llama.cpp's converters apply to Q and K. Attention scores are dot products over a
    /// head, so the same permutation of q and k leaves them unchanged.
    fn unpermute_heads(&mut self, heads: usize) {
        let rows_per_head = self.out / heads;
        let half = rows_per_head / 2;
        let (kw, nb) = (self.words.len() / self.out, self.blocks);
        let (words, scales) = (self.words.clone(), self.scales.clone());
        for h in 0..heads {
            for i in 0..half {
                for j in 0..2 {
                    let (from, to) = (
                        h * rows_per_head + 2 * i + j,
                        h * rows_per_head + j * half + i,
                    );
                    self.words[to * kw..(to + 1) * kw]
                        .copy_from_slice(&words[from * kw..(from + 1) * kw]);
                    self.scales[to * nb..(to + 1) * nb]
                        .copy_from_slice(&scales[from * nb..(from + 1) * nb]);
                }
            }
        }
    }

    fn into_layer<B: TernaryBackend>(self, device: &B::Device) -> BitLinear<B> {
        BitLinear::from_packed(self.words, self.scales, self.out, self.blocks, device)
    }
}

/// Where weights come from: names follow GGUF (`blk.N.attn_q.weight`); each source maps them to its own.
/// `Sync` so the ternary matrices of several layers decode on several threads.
pub(crate) trait WeightSource: Sync {
    /// A float tensor's values, checked to have `len` elements.
    fn float(&self, name: &str, len: usize) -> Result<Vec<f32>, LoadError>;
    /// Whether a tensor exists.
    fn has(&self, name: &str) -> bool;
    /// A ternary matrix `[out, in]`, packed.
    fn ternary(&self, name: &str, in_f: usize, out_f: usize) -> Result<PackedTernary, LoadError>;
    /// A float matrix `[rows, cols]` as the source encodes it, for row-by-row decoding.
    fn table(&self, name: &str, rows: usize, cols: usize) -> Result<RowTable, LoadError>;
}

/// The projections of a block, in the order [`build`] assembles them.
const PROJECTIONS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// Assembles the weights from any weight source.
pub(crate) fn build<B: TernaryBackend>(
    src: &impl WeightSource,
    config: ModelConfig,
    device: &B::Device,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<(BitNetModel<B>, ModelConfig), LoadError> {
    let c = &config;
    let total = c.n_layers + 2;
    let mut report = |done| progress(LoadProgress { done, total });
    let (h, f, hd) = (c.hidden_size, c.ffn_size, c.head_dim());
    let norm = |name: &str, len: usize| -> Result<_, LoadError> {
        Ok(RmsNorm::<B>::from_weights(
            src.float(name, len)?,
            c.rms_eps,
            device,
        ))
    };
    let opt_norm = |name: &str, len: usize| {
        if src.has(name) {
            norm(name, len).map(Some)
        } else {
            Ok(None)
        }
    };
    let (q, kv) = (c.n_heads * hd, c.n_kv_heads * hd);
    let dims = [(h, q), (h, kv), (h, kv), (q, h), (h, f), (h, f), (f, h)];
    let mut blocks = Vec::with_capacity(c.n_layers);
    // Decoding and packing the trits is most of the load: a group of layers at a time, one matrix per task,
    // across the rayon pool; the tensors are then made on this thread.
    let layers: Vec<usize> = (0..c.n_layers).collect();
    for group in layers.chunks(rayon::current_num_threads().max(1)) {
        let tasks: Vec<(usize, usize)> = group
            .iter()
            .flat_map(|&i| (0..PROJECTIONS.len()).map(move |p| (i, p)))
            .collect();
        let packed: Vec<Result<PackedTernary, LoadError>> = tasks
            .par_iter()
            .map(|&(i, p)| {
                let (in_f, out_f) = dims[p];
                let mut m =
                    src.ternary(&format!("blk.{i}.{}.weight", PROJECTIONS[p]), in_f, out_f)?;
                if c.rope_type == RopeType::Normal {
                    match PROJECTIONS[p] {
                        "attn_q" => m.unpermute_heads(c.n_heads),
                        "attn_k" => m.unpermute_heads(c.n_kv_heads),
                        _ => {}
                    }
                }
                Ok(m)
            })
            .collect();
        let mut packed = packed.into_iter();
        for &i in group {
            let n = |t: &str| format!("blk.{i}.{t}.weight");
            let mut lin = || -> Result<BitLinear<B>, LoadError> {
                Ok(packed
                    .next()
                    .expect("one per projection")?
                    .into_layer(device))
            };
            blocks.push(Block {
                attn_norm: norm(&n("attn_norm"), h)?,
                attn: Attention {
                    wq: lin()?,
                    wk: lin()?,
                    wv: lin()?,
                    wo: lin()?,
                    sub_norm: opt_norm(&n("attn_sub_norm"), q)?,
                    n_heads: c.n_heads,
                    n_kv_heads: c.n_kv_heads,
                },
                ffn_norm: norm(&n("ffn_norm"), h)?,
                ffn: FeedForward {
                    gate: lin()?,
                    up: lin()?,
                    down: lin()?,
                    sub_norm: opt_norm(&n("ffn_sub_norm"), f)?,
                    activation: c.activation,
                },
            });
            report(i + 1);
        }
    }
    let matrix = |name: &str| src.table(name, c.vocab_size, h).map(Embedding::encoded);
    let embedding = matrix("token_embd.weight")?;
    report(c.n_layers + 1);
    let model = BitNetModel {
        embedding,
        blocks,
        norm: norm("output_norm.weight", h)?,
        output: if c.tied_embeddings {
            None
        } else {
            Some(matrix("output.weight")?)
        },
    };
    report(total);
    Ok((model, config))
}

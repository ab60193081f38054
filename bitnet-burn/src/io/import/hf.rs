//! transformers BitNet checkpoints (`BitNetForCausalLM`): packed uint8 ternary weights with `weight_scale`, or
//! float master weights (ternarized with absmean), read zero-copy from memory-mapped safetensors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bitnet_gguf::quant::bf16_to_f32;
use bitnet_gguf::{quant::f16_to_f32, Activation, GgmlType, ModelConfig, RopeType};
use bitnet_kernels_cubecl::packing::{pack_row, words_per_row};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;

use super::{PackedTernary, WeightSource};
use crate::error::LoadError;
use crate::nn::{absmean_ternarize, RowTable};

/// A memory-mapped checkpoint directory: `config.json` plus one or more `*.safetensors` shards.
pub struct HfCheckpoint {
    dir: PathBuf,
    config: Json,
    shards: Vec<(PathBuf, memmap2::Mmap)>,
    index: HashMap<String, usize>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl HfCheckpoint {
    /// Maps every shard and indexes tensor names.
    pub fn open(dir: &Path) -> Result<Self, LoadError> {
        let cfg_path = dir.join("config.json");
        let config: Json = serde_json::from_slice(
            &std::fs::read(&cfg_path).map_err(io(&cfg_path))?,
        )
        .map_err(|e| LoadError::Checkpoint {
            path: cfg_path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(LoadError::Checkpoint {
                path: dir.display().to_string(),
                message: "no *.safetensors file".into(),
            });
        }
        let (mut shards, mut index) = (Vec::new(), HashMap::new());
        for (i, path) in files.into_iter().enumerate() {
            let file = std::fs::File::open(&path).map_err(io(&path))?;
            // SAFETY: read-only mapping of a file we do not modify.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io(&path))?;
            let st = SafeTensors::deserialize(&map).map_err(|e| LoadError::Checkpoint {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            index.extend(st.names().into_iter().map(|n| (n.to_string(), i)));
            shards.push((path, map));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            shards,
            index,
        })
    }

    /// The hyper-parameters from `config.json`.
    pub fn model_config(&self) -> Result<ModelConfig, LoadError> {
        let path = self.dir.join("config.json").display().to_string();
        let bad = |m: String| LoadError::Checkpoint {
            path: path.clone(),
            message: m,
        };
        let int = |k: &str| {
            self.config[k]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("missing integer {k:?}")))
        };
        let float = |k: &str, d: f64| self.config[k].as_f64().unwrap_or(d) as f32;
        let hidden_size = int("hidden_size")?;
        let n_heads = int("num_attention_heads")?;
        let act = self.config["hidden_act"].as_str().unwrap_or("relu2");
        let activation = Activation::parse(act)
            .ok_or_else(|| bad(format!("hidden_act {act:?} is neither relu2 nor silu")))?;
        if n_heads == 0 || hidden_size % n_heads != 0 {
            return Err(bad(format!(
                "{n_heads} heads do not divide hidden_size {hidden_size}"
            )));
        }
        Ok(ModelConfig {
            architecture: self.config["model_type"]
                .as_str()
                .unwrap_or("bitnet")
                .into(),
            hidden_size,
            n_layers: int("num_hidden_layers")?,
            n_heads,
            n_kv_heads: int("num_key_value_heads").unwrap_or(n_heads),
            ffn_size: int("intermediate_size")?,
            vocab_size: int("vocab_size")?,
            context_length: int("max_position_embeddings")?,
            rope_theta: float("rope_theta", 10_000.0),
            rope_dim: hidden_size / n_heads,
            rope_type: RopeType::Neox,
            rope_type_source: "transformers checkpoints rotate halves (rotate_half)".into(),
            rms_eps: float("rms_norm_eps", 1e-6),
            activation,
            activation_source: "from config.json hidden_act".into(),
            tied_embeddings: self.config["tie_word_embeddings"]
                .as_bool()
                .unwrap_or(false),
            sub_norms: self
                .index
                .contains_key("model.layers.0.self_attn.attn_sub_norm.weight"),
        })
    }

    /// `autobitlinear` multiplies the output by `weight_scale` (= mean|W|); the legacy `bitlinear` divides by it.
    fn scale_multiplies(&self) -> bool {
        self.config["quantization_config"]["linear_class"].as_str() == Some("autobitlinear")
    }

    fn tensor(&self, name: &str) -> Result<safetensors::tensor::TensorView<'_>, LoadError> {
        let missing = || LoadError::Tensor {
            file: self.dir.display().to_string(),
            tensor: name.into(),
            message: "missing".into(),
        };
        let &i = self.index.get(name).ok_or_else(missing)?;
        let (path, map) = &self.shards[i];
        let st = SafeTensors::deserialize(map).map_err(|e| LoadError::Checkpoint {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        st.tensor(name).map_err(|_| missing())
    }

    fn floats(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), LoadError> {
        let t = self.tensor(name)?;
        let v = decode_floats(t.dtype(), t.data())
            .ok_or_else(|| self.bad(name, format!("dtype {:?} is not a float type", t.dtype())))?;
        Ok((t.shape().to_vec(), v))
    }

    /// The ternary matrix `[out, in]` GGUF calls `name`, row by row as trits, and its scale (output = trits·x·scale).
    ///
    /// Packed uint8 weights keep their trits; `weight_scale` is read as `quantization_config.linear_class` says
    /// (`autobitlinear` multiplies by it, legacy `bitlinear` divides). Float masters are ternarized with absmean.
    pub(crate) fn ternary_rows(
        &self,
        name: &str,
        in_f: usize,
        out_f: usize,
        mut row_out: impl FnMut(usize, &[i8]),
    ) -> Result<f32, LoadError> {
        let hf = hf_name(name);
        let t = self.tensor(&hf)?;
        let mut trits = vec![0i8; in_f];
        if t.dtype() == Dtype::U8 {
            // Packed [out/4, in]: rows i·out/4 + r of column c are bits 2i..2i+2 of byte [r, c], code = trit + 1.
            if t.shape() != [out_f / 4, in_f] || !out_f.is_multiple_of(4) {
                return Err(self.bad(
                    &hf,
                    format!(
                        "packed shape {:?}, expected [{}, {in_f}]",
                        t.shape(),
                        out_f / 4
                    ),
                ));
            }
            let d = t.data();
            let quarter = out_f / 4;
            for row in 0..out_f {
                let (chunk, r) = (row / quarter, row % quarter);
                for (c, tr) in trits.iter_mut().enumerate() {
                    let code = (d[r * in_f + c] >> (2 * chunk)) & 3;
                    if code == 3 {
                        return Err(self.bad(
                            &hf,
                            format!("code 3 at row {row}, column {c} (not a ternary packing)"),
                        ));
                    }
                    *tr = code as i8 - 1;
                }
                row_out(row, &trits);
            }
            let (_, ws) = self.floats(&format!("{hf}_scale"))?;
            let ws = *ws
                .first()
                .ok_or_else(|| self.bad(&hf, "empty weight_scale".into()))?;
            if !ws.is_finite() || ws == 0.0 {
                return Err(self.bad(&hf, format!("weight_scale is {ws}")));
            }
            return Ok(if self.scale_multiplies() {
                ws
            } else {
                1.0 / ws
            });
        }
        // Float master weights: absmean ternarization, scale = mean|W| (BitNet b1.58).
        let (shape, w) = self.floats(&hf)?;
        if shape != [out_f, in_f] {
            return Err(self.bad(&hf, format!("shape {shape:?}, expected [{out_f}, {in_f}]")));
        }
        Ok(absmean_ternarize(&w, in_f, row_out))
    }

    /// Elements `range` of the float tensor GGUF calls `name` (checked to have `len` elements), decoded without
    /// the rest of the tensor.
    pub(crate) fn float_piece(
        &self,
        name: &str,
        len: usize,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<f32>, LoadError> {
        let hf = hf_name(name);
        let t = self.tensor(&hf)?;
        let n: usize = t.shape().iter().product();
        if n != len || range.end > n {
            return Err(self.bad(
                &hf,
                format!("expected {len} elements, found shape {:?}", t.shape()),
            ));
        }
        let size = t.data().len() / n.max(1);
        decode_floats(t.dtype(), &t.data()[range.start * size..range.end * size])
            .ok_or_else(|| self.bad(&hf, format!("dtype {:?} is not a float type", t.dtype())))
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn bad(&self, name: &str, message: String) -> LoadError {
        LoadError::Tensor {
            file: self.dir.display().to_string(),
            tensor: name.into(),
            message,
        }
    }
}

/// Little-endian F32, BF16 or F16 bytes as f32 (`None` for other dtypes).
fn decode_floats(dtype: Dtype, d: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        _ => return None,
    })
}

/// GGUF tensor name → transformers name.
pub(crate) fn hf_name(gguf: &str) -> String {
    let Some(rest) = gguf.strip_prefix("blk.") else {
        return match gguf {
            "token_embd.weight" => "model.embed_tokens.weight",
            "output_norm.weight" => "model.norm.weight",
            "output.weight" => "lm_head.weight",
            other => other,
        }
        .into();
    };
    let (layer, t) = rest.split_once('.').unwrap_or((rest, ""));
    let module = match t.trim_end_matches(".weight") {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_sub_norm" => "self_attn.attn_sub_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "ffn_sub_norm" => "mlp.ffn_sub_norm",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        other => other,
    };
    format!("model.layers.{layer}.{module}.weight")
}

impl WeightSource for HfCheckpoint {
    fn float(&self, name: &str, len: usize) -> Result<Vec<f32>, LoadError> {
        let hf = hf_name(name);
        let (shape, v) = self.floats(&hf)?;
        if v.len() != len {
            return Err(self.bad(
                &hf,
                format!("expected {len} elements, found shape {shape:?}"),
            ));
        }
        Ok(v)
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(&hf_name(name))
    }

    fn table(&self, name: &str, rows: usize, cols: usize) -> Result<RowTable, LoadError> {
        let hf = hf_name(name);
        let t = self.tensor(&hf)?;
        if t.shape() != [rows, cols] {
            return Err(self.bad(
                &hf,
                format!("shape {:?}, expected [{rows}, {cols}]", t.shape()),
            ));
        }
        // The checkpoint's own encoding (the same little-endian layouts as ggml's), not an f32 copy.
        let ty = match t.dtype() {
            Dtype::F32 => GgmlType::F32,
            Dtype::F16 => GgmlType::F16,
            Dtype::BF16 => GgmlType::BF16,
            other => return Err(self.bad(&hf, format!("dtype {other:?} is not a float type"))),
        };
        RowTable::owned(
            &self.dir.display().to_string(),
            &hf,
            ty,
            t.data().to_vec(),
            rows,
            cols,
        )
    }

    fn ternary(&self, name: &str, in_f: usize, out_f: usize) -> Result<PackedTernary, LoadError> {
        let kw = words_per_row(in_f);
        let mut words = vec![0u32; out_f * kw];
        let scale = self.ternary_rows(name, in_f, out_f, |row, trits| {
            pack_row(trits, &mut words[row * kw..(row + 1) * kw])
        })?;
        Ok(PackedTernary {
            words,
            scales: vec![scale; out_f],
            out: out_f,
            blocks: 1,
        })
    }
}

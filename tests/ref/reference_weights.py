#!/usr/bin/env python3
"""Reference tensor values for the Rust tests, computed by independent code.

  reference_weights.py gguf FILE OUT_DIR   every tensor of FILE dequantized by gguf-py (PyPI `gguf`), one .npy each,
                                           and its metadata as metadata.json
  reference_weights.py hf HF_DIR OUT_DIR   the effective weights of a transformers BitNet checkpoint (T / weight_scale
                                           for the legacy `bitlinear` class, T * weight_scale for `autobitlinear`),
                                           named like GGUF tensors, as float32 .npy
"""
import json
import os
import struct
import sys

import numpy as np


def gguf_dump(path, out):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)
    metadata = {}
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):
            continue
        value = field.contents()
        metadata[field.name] = value.tolist() if hasattr(value, "tolist") else value
    json.dump(metadata, open(os.path.join(out, "metadata.json"), "w"))
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        np.save(os.path.join(out, t.name + ".npy"), values)


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        buf = np.frombuffer(body[a:b], dtype={"BF16": np.uint16, "U8": np.uint8, "F32": np.float32}[meta["dtype"]])
        if meta["dtype"] == "BF16":
            buf = (buf.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = buf.reshape(meta["shape"])
    return tensors


GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.attn_sub_norm": "attn_sub_norm", "mlp.ffn_sub_norm": "ffn_sub_norm",
}


def hf_dump(hf_dir, out):
    config = json.load(open(os.path.join(hf_dir, "config.json")))
    autobit = config.get("quantization_config", {}).get("linear_class") == "autobitlinear"
    t = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    for name, value in t.items():
        if name.endswith(".weight_scale"):
            continue
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        else:
            parts = name.split(".")  # model.layers.N.<module...>.weight
            gname = f"blk.{parts[2]}.{GGUF_NAMES['.'.join(parts[3:-1])]}.weight"
        if value.dtype == np.uint8:
            # Packed [out/4, in]: rows i*out/4 + r of column c sit in bits 2i..2i+1 of byte [r, c], code = trit + 1.
            trits = np.concatenate([((value >> (2 * i)) & 3).astype(np.int8) - 1 for i in range(4)], axis=0)
            scale = t[name + "_scale"].astype(np.float32)[0]
            value = trits.astype(np.float32) * scale if autobit else trits.astype(np.float32) / scale
        np.save(os.path.join(out, gname + ".npy"), value.astype(np.float32).reshape(-1))


if __name__ == "__main__":
    mode, src, out = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    {"gguf": gguf_dump, "hf": hf_dump}[mode](src, out)

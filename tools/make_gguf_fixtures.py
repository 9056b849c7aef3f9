#!/usr/bin/env python3
"""GGUF fixtures made with the `gguf` package (llama.cpp's gguf-py), run by hand:

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install gguf safetensors numpy
    /tmp/fx/bin/python tools/make_gguf_fixtures.py

Writes tests/fixtures/gguf/:
- blocks.gguf: two blocks of every type we read (random bytes, sane f16 scales), each beside
  `<TYPE>.expected`, the F32 values gguf-py's `dequantize` gives for them;
- llama-q8_0.gguf, llama-q4_1.gguf: tests/fixtures/llama converted as llama.cpp's converter does
  (Llama architecture, q/k rows permuted, matrices quantized by gguf-py, norms F32, the tokenizer as
  `tokenizer.ggml.*` only), and llama-q8_0/, llama-q4_1/: the same weights dequantized by gguf-py
  as a Hugging Face folder, to compare our import with.
"""
import json
import os
import shutil

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFWriter, quants
from safetensors.numpy import load_file, save_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
OUT = os.path.join(ROOT, "gguf")
rng = np.random.default_rng(15)


def blocks():
    w = GGUFWriter(os.path.join(OUT, "blocks.gguf"), "llama")
    # (type, bytes per block, offsets of f16 scales to make finite)
    for ty, size, scales in [
        (T.Q8_0, 34, [0]), (T.Q4_0, 18, [0]), (T.Q4_1, 20, [0, 2]), (T.Q4_K, 144, [0, 2]),
        (T.Q6_K, 210, [208]), (T.TQ1_0, 54, [52]), (T.TQ2_0, 66, [64]), (T.F16, 2, [0]),
        (T.BF16, 2, []),
    ]:
        n = 2 if size > 2 else 64
        raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
        for off in scales:
            raw[:, off:off + 2] = np.frombuffer(
                rng.uniform(0.01, 0.5, size=n).astype(np.float16).tobytes(), dtype=np.uint8
            ).reshape(n, 2)
        if ty == T.BF16:
            raw[:, 1] = rng.integers(0x3c, 0x41, size=n)  # exponents of ordinary magnitudes
        flat = raw.reshape(-1)
        values = quants.dequantize(flat, ty).astype(np.float32).reshape(-1)
        w.add_tensor(ty.name, flat, raw_dtype=ty)
        w.add_tensor(ty.name + ".expected", values)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def permute(x, heads):
    return x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def unpermute(x, heads):
    return x.reshape(heads, x.shape[0] // heads // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


NAMES = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(n):
    if n.startswith("model.layers."):
        l, rest = n[len("model.layers."):].split(".", 1)
        stem, suffix = rest.rsplit(".", 1)
        return f"blk.{l}.{NAMES[stem]}.{suffix}"
    return {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight"}[n]


def model(ty):
    src = os.path.join(ROOT, "llama")
    cfg = json.load(open(os.path.join(src, "config.json")))
    tok = json.load(open(os.path.join(src, "tokenizer.json")))
    tensors = load_file(os.path.join(src, "model.safetensors"))
    name = f"llama-{ty.name.lower()}"
    w = GGUFWriter(os.path.join(OUT, name + ".gguf"), "llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    w.add_rope_dimension_count(cfg["head_dim"])
    w.add_vocab_size(cfg["vocab_size"])
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    special = {a["id"] for a in tok["added_tokens"] if a["special"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([3 if i in special else 1 for i in range(len(tokens))])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    w.add_add_bos_token(False)
    deq = {}
    for n, x in tensors.items():
        x = x.astype(np.float32)
        heads = {"q_proj": cfg["num_attention_heads"], "k_proj": cfg["num_key_value_heads"]}
        h = next((v for k, v in heads.items() if f".{k}." in n), None)
        if h:
            x = permute(x, h)
        if x.ndim == 1:
            w.add_tensor(gguf_name(n), x)
            back = x
        else:
            q = quants.quantize(x, ty)
            w.add_tensor(gguf_name(n), q, raw_dtype=ty)
            back = quants.dequantize(q, ty).astype(np.float32).reshape(x.shape)
        deq[n] = np.ascontiguousarray(unpermute(back, h) if h else back)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copy(os.path.join(src, f), folder)
    save_file(deq, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    blocks()
    for ty in [T.Q8_0, T.Q4_1]:
        model(ty)
    print("wrote", sorted(os.listdir(OUT)))

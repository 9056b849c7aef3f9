#!/usr/bin/env python3
"""Checks `bitnet export` against the tools that read its formats, run by hand:

    /tmp/fx/bin/pip install gguf torch transformers safetensors numpy
    cargo build -p bitnet-cli && /tmp/fx/bin/python tools/check_exports.py

For every model fixture: `bitnet pack`, `bitnet unpack` (γ·q in F32, the reference), then
- gguf-tq2_0 / gguf-tq1_0 read by gguf-py's GGUFReader: every tensor dequantized by gguf-py
  (rows of q/k permuted back) equals γ·q up to the f16 block scale; every TQ tensor's bytes equal
  gguf-py's own `quantize` of those values (bit-identical blocks); the F16 fallback is listed;
- hf-bitnet: transformers' own `unpack_weights` gives our codes and weight_scale = 1/γ;
and for the llama fixture trained a few steps with the post-attention norm, and with SubLN:
- hf (with modeling_bitnet_studio.py) loaded by transformers with trust_remote_code gives our
  logits (`bitnet grads` of the same folder);
- hf-bitnet loaded by transformers gives our logits when the model was trained with --act-bits 8
  (W1.58A8, what BitLinear computes); without, they differ by BitLinear's 8-bit activation rounding.
- when llama-cpp-python is installed (built from source: `pip install llama-cpp-python`), llama.cpp
  loads every GGUF export; its logits of one sequence against ours, and whether their greedy next
  tokens agree; a SubLN model with tied embeddings exports to llama.cpp's `bitnet` architecture.
Prints Markdown tables for docs/FORMAT.md.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGUFReader, quants
from safetensors.numpy import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BITNET = os.path.join(ROOT, "target", "debug", "bitnet")


def bitnet(*args):
    r = subprocess.run([BITNET, *args], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"bitnet {' '.join(args)}: {r.stderr}")
    return r.stdout


def unpermute(x, heads):
    return x.reshape(heads, x.shape[0] // heads // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


HF = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
      "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
      "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def hf_name(n):
    if n.startswith("blk."):
        _, l, part, suffix = n.split(".")
        return f"model.layers.{l}.{HF[part]}.{suffix}"
    stem, suffix = n.split(".")
    return {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}[stem] + "." + suffix


def check_gguf(path, ref, cfg, ternary):
    r = GGUFReader(path)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    worst, identical, fallback = 0.0, 0, 0
    for t in r.tensors:
        name = hf_name(t.name)
        v = quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(ref[name].shape)
        heads = {"q_proj": cfg["num_attention_heads"], "k_proj": cfg["num_key_value_heads"]}
        h = next((x for k, x in heads.items() if f".{k}." in name), None)
        if h and arch == "llama":
            v = unpermute(v, h)
        want = ref[name]
        if name in ternary:
            scale = np.abs(want).max()
            err = np.abs(v - want).max() / scale
            worst = max(worst, err)
            if t.tensor_type.name.startswith("TQ"):
                raw = quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1, t.shape[0])
                again = quants.quantize(raw, t.tensor_type)
                identical += int(np.array_equal(again.reshape(-1), np.asarray(t.data).reshape(-1)))
            else:
                fallback += 1
        else:
            assert np.abs(v - want).max() <= 1e-3 * max(np.abs(want).max(), 1.0), name
    return arch, worst, identical, fallback


def check_hf_bitnet(folder, ref, ternary):
    import torch
    from transformers.integrations.bitnet import unpack_weights
    st = load_file(os.path.join(folder, "model.safetensors"))
    cfg = json.load(open(os.path.join(folder, "config.json")))
    assert cfg["quantization_config"]["quant_method"] == "bitnet"
    worst = 0.0
    for name in ternary:
        q = unpack_weights(torch.from_numpy(st[name]), dtype=torch.float32).numpy()
        scale = 1.0 / st[name.replace(".weight", ".weight_scale")][0]
        worst = max(worst, np.abs(q * scale - ref[name]).max() / np.abs(ref[name]).max())
    return worst


def llama_cpp(path, ours):
    """llama.cpp's logits of TOKENS from the GGUF file against ours: (max diff / max |logit|,
    fraction of positions whose argmax agrees), or None without llama-cpp-python."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=path, logits_all=True, n_ctx=64, verbose=False)
    llm.eval(TOKENS[0])
    theirs = np.array(llm.scores[:len(TOKENS[0])])
    return np.abs(theirs - ours).max() / np.abs(ours).max(), (theirs.argmax(-1) == ours.argmax(-1)).mean()


def cpp_cell(path, ours):
    r = llama_cpp(path, ours)
    return "(llama-cpp-python not installed)" if r is None else f"{r[0]:.2e}, argmax {r[1]:.0%}"


def wide(d, tied=False):
    """The llama fixture's tokenizer on a random one-layer Llama whose rows are 256 and 512 long,
    so that its projections are TQ blocks rather than the F16 fallback."""
    import shutil
    from safetensors.numpy import save_file
    src = os.path.join(ROOT, "tests", "fixtures", "llama")
    out = os.path.join(d, "wide")
    os.makedirs(out)
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copy(os.path.join(src, f), out)
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg.update(hidden_size=256, intermediate_size=512, num_hidden_layers=1, num_attention_heads=2,
               num_key_value_heads=1, head_dim=128, tie_word_embeddings=tied)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"))
    g = np.random.default_rng(15)
    h, i, v = 256, 512, cfg["vocab_size"]
    shapes = {"model.embed_tokens.weight": (v, h), "lm_head.weight": (v, h), "model.norm.weight": (h,),
              "model.layers.0.input_layernorm.weight": (h,), "model.layers.0.post_attention_layernorm.weight": (h,),
              "model.layers.0.self_attn.q_proj.weight": (h, h), "model.layers.0.self_attn.k_proj.weight": (128, h),
              "model.layers.0.self_attn.v_proj.weight": (128, h), "model.layers.0.self_attn.o_proj.weight": (h, h),
              "model.layers.0.mlp.gate_proj.weight": (i, h), "model.layers.0.mlp.up_proj.weight": (i, h),
              "model.layers.0.mlp.down_proj.weight": (h, i)}
    if tied:
        del shapes["lm_head.weight"]
    save_file({n: (g.standard_normal(s) * 0.05).astype(np.float32) for n, s in shapes.items()},
              os.path.join(out, "model.safetensors"))
    return out


DATA = [
    ("Write a haiku about the sea.", "Waves fold into foam, the tide keeps its time."),
    ("Solve this math problem: what is 12 times 7?", "12 times 7 is 84."),
    ("Write a Python function to reverse a string.", "def reverse(s): return s[::-1]"),
    ("Write a haiku about the moon.", "Pale light on the sea."),
]
TOKENS = [[5, 17, 42, 9, 3, 77, 120, 8]]


def our_logits(folder, d, a8=False):
    tokens = os.path.join(d, "tokens.json")
    json.dump(TOKENS, open(tokens, "w"))
    out = os.path.join(d, "grads.safetensors")
    bitnet("grads", folder, "--tokens", tokens, "--out", out, "--overwrite", *(["--act-bits", "8"] if a8 else []))
    return load_file(out)["logits"][0]


def their_logits(folder):
    import torch
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)
    with torch.no_grad():
        return m(torch.tensor(TOKENS)).logits[0].numpy(), type(m).__name__


def extra_norm_rows():
    rows = []
    for label, flags in [("post-attention norm", ["--rmsnorm_post_attn", "1"]),
                         ("SubLN", ["--rmsnorm_post_attn", "0", "--subln"]),
                         ("--act-bits 8", ["--rmsnorm_post_attn", "0", "--act-bits", "8"]),
                         ("SubLN, --act-bits 8", ["--rmsnorm_post_attn", "0", "--subln", "--act-bits", "8"])]:
        with tempfile.TemporaryDirectory() as d:
            data = os.path.join(d, "data.jsonl")
            with open(data, "w") as f:
                for i, o in DATA:
                    f.write(json.dumps({"instruction": i, "input": "", "output": o}) + "\n")
            run = os.path.join(d, "run")
            bitnet("train", "--base_model", os.path.join(ROOT, "tests", "fixtures", "llama"), "--dataset", data,
                   "--out_dir", run, "--steps", "3", "--bsz", "2", "--grad_accum", "1", "--lr", "3e-3",
                   "--seq-len", "32", *flags)
            a8 = "8" in flags
            # Ours: the run's dequantized folder, with the rounding when the model was trained with it.
            ours = our_logits(os.path.join(run, "hf"), d, a8)
            scale = np.abs(ours).max()
            for fmt in ["hf-bitnet"] if a8 else ["hf", "hf-bitnet"]:
                out = os.path.join(d, fmt)
                bitnet("export", run, "--format", fmt, "--out", out, "--overwrite")
                theirs, cls = their_logits(out)
                rows.append(f"| llama, 3 steps with {label} | {fmt} | transformers {cls} | "
                            f"{np.abs(theirs - ours).max() / scale:.2e} |")
    return rows


def bitnet_arch_row():
    """A SubLN model with tied embeddings, trained 2 steps, as llama.cpp's `bitnet` architecture."""
    with tempfile.TemporaryDirectory() as d:
        src = wide(d, tied=True)
        data = os.path.join(d, "data.jsonl")
        with open(data, "w") as f:
            for i, o in DATA:
                f.write(json.dumps({"instruction": i, "input": "", "output": o}) + "\n")
        run = os.path.join(d, "run")
        bitnet("train", "--base_model", src, "--dataset", data, "--out_dir", run, "--steps", "2", "--bsz", "2",
               "--grad_accum", "1", "--lr", "3e-3", "--seq-len", "32", "--rmsnorm_post_attn", "0", "--subln")
        out = os.path.join(d, "m.gguf")
        v = json.loads(bitnet("export", run, "--format", "gguf-tq2_0", "--out", out, "--json"))
        ours = our_logits(os.path.join(run, "hf"), d)
        return f"| wide, tied, 2 steps with SubLN | gguf-tq2_0 | {v['architecture']} | {cpp_cell(out, ours)} |"


def main():
    rows = []
    for fixture in ["llama", "qwen2", "mistral", "wide"]:
        with tempfile.TemporaryDirectory() as d:
            src = wide(d) if fixture == "wide" else os.path.join(ROOT, "tests", "fixtures", fixture)
            packed = os.path.join(d, "m.bitnet.safetensors")
            bitnet("pack", src, "--out", packed)
            bitnet("unpack", packed, "--out", os.path.join(d, "hf"))
            ref = load_file(os.path.join(d, "hf", "model.safetensors"))
            cfg = json.load(open(os.path.join(src, "config.json")))
            ternary = [n for n in ref if "_proj." in n and n.endswith(".weight")]
            ours = our_logits(os.path.join(d, "hf"), d)
            for fmt in ["gguf-tq2_0", "gguf-tq1_0"]:
                out = os.path.join(d, fmt + ".gguf")
                bitnet("export", packed, "--format", fmt, "--out", out)
                arch, worst, ident, fb = check_gguf(out, ref, cfg, ternary)
                rows.append(f"| {fixture} | {fmt} | gguf-py {arch}: {len(ternary)} ternary tensors, "
                            f"{ident} TQ tensors bit-identical to gguf-py's quantize, {fb} F16 fallback | "
                            f"{worst:.2e} | {cpp_cell(out, ours)} |")
            out = os.path.join(d, "hf-bitnet")
            bitnet("export", packed, "--format", "hf-bitnet", "--out", out)
            worst = check_hf_bitnet(out, ref, ternary)
            rows.append(f"| {fixture} | hf-bitnet | transformers unpack_weights / weight_scale | {worst:.2e} | |")
    print("| fixture | export | checked with | max abs(err) / γ | llama.cpp logits vs ours: max diff / max abs(logit), greedy agreement |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("| model | export | loaded as | max abs(logit difference) / max abs(logit) |")
    print("|---|---|---|---|")
    print("\n".join(extra_norm_rows()))
    print()
    print("| model | export | llama.cpp architecture | llama.cpp logits vs ours |")
    print("|---|---|---|---|")
    print(bitnet_arch_row())


if __name__ == "__main__":
    main()

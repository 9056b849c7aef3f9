#!/usr/bin/env python3
"""The greedy-generation oracle: what Hugging Face `generate` produces, greedily and in float64, for
three prompts of different token lengths on each fixture model, with the logits behind every choice.

Run by hand (never in CI), from the repository root, after tools/make_fixtures.py:
    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch transformers tokenizers safetensors
    /tmp/fx/bin/python tools/make_generate_oracle.py

Writes tests/fixtures/generate/{model}.json for model in llama, qwen2, mistral:
  {"model": "llama", "dtype": "float64", "max_new_tokens": 16, "eos_token_id": [ids],
   "torch": version, "transformers": version,
   "prompts": [{"text": prompt,
                "ids": the tokenizer's encoding of text (add_special_tokens=True),
                "new_ids": what model.generate(do_sample=False, num_beams=1, max_new_tokens=16) returns
                           after the prompt, one prompt at a time (no padding); it ends with the EOS id
                           when EOS was emitted before the 16th token,
                "step_logits": (len(new_ids), V) the logits each new id was chosen from: HF's
                               generate(..., output_logits=True).logits are these, cast to float32
                               (generate casts before its argmax); the float64 values written are
                               lm_head's output in the same cached decode, checked to cast to them,
                "prefill_logits": (len(ids), V) a plain forward over the prompt, every position,
                "min_margin": smallest top1 - top2 gap over step_logits,
                "min_rel_margin": smallest (top1 - top2) / max|logit| of the step, over steps,
                "max_abs_logit": largest |logit| over step_logits}, ... three prompts ...]}
Floats are written as Python's repr of the float64 (round-trips exactly). "float64" is the model's
dtype; HF itself still rounds to float32 in places (each RMSNorm's input, the RoPE angles), so these
logits are within ~2e-7·max|logit| of an all-float64 forward: far inside the Rust side's tolerance.
The model runs with sdpa attention (eager's softmax is float32 too); the cached decode is checked
against a full forward over prompt + generated ids.

The models are tiny and random, so greedy choices can be near-ties. The Rust side runs in f32 and
compares logits to within 1e-3·max|logit|, so the three prompts (one short, one medium, one long,
generated there as one ragged batch) are picked from CANDIDATES so that every step's top1 - top2 gap
is at least REL_MARGIN·max|logit| of that step. The same three prompts are used for every model when
one set passes for all; otherwise each model gets its own best set, and a set that still fails is
used with a printed warning.
"""
import itertools
import json
import os
import shutil

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
OUT = os.path.join(ROOT, "generate")
MODELS = ["llama", "qwen2", "mistral"]
MAX_NEW_TOKENS = 16
REL_MARGIN = 1e-3
RECOMPUTE_ERR = [0.0]  # largest |cached decode - full forward| seen, printed at the end
# Token-length bins the three prompts are drawn from, one prompt per bin (targets ~5, ~12, ~20).
BINS = [(4, 7), (10, 14), (18, 24)]
CANDIDATES = [
    "Hi.\nResponse:",
    "Hi!\nResponse:",
    "Go.\nResponse:",
    "Why?\nResponse:",
    "Say yes.\nResponse:",
    "Be brief.\nResponse:",
    "Instruction: Say yes.\nResponse:",
    "Instruction: Be kind.\nResponse:",
    "Instruction: Greet me.\nResponse:",
    "Instruction: Count to five.\nResponse:",
    "Instruction: Describe the sea.\nResponse:",
    "Instruction: Tell me a joke.\nResponse:",
    "Instruction: Write a short poem.\nResponse:",
    "Instruction: Explain what the sea is.\nResponse:",
]


def load(name):
    path = os.path.join(ROOT, name)
    # sdpa, not eager: eager's softmax runs in float32, which makes the cached decode and a full
    # forward differ by ~1e-8; sdpa on CPU in float64 keeps them within ~1e-15.
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa").double()
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def eos_ids(model):
    eos = model.generation_config.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


def top2_gap(row):
    top = torch.topk(row, 2).values
    return (top[0] - top[1]).item()


@torch.no_grad()
def run(model, tok, text):
    """Greedy generation of one prompt, unbatched, and the prompt's prefill logits."""
    ids = tok(text, add_special_tokens=True)["input_ids"]
    eos = eos_ids(model)
    input_ids = torch.tensor([ids])
    # generate casts each step's logits to float32 before the argmax (and before output_logits);
    # the float64 logits they were cast from are taken off lm_head as the same cached decode runs.
    captured = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: captured.append(o[0, -1].clone()))
    out = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False,
        num_beams=1,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=eos[0],
        eos_token_id=eos,
        output_logits=True,
        return_dict_in_generate=True,
    )
    hook.remove()
    new_ids = out.sequences[0, len(ids):].tolist()
    hf = torch.stack([l[0] for l in out.logits])  # (len(new_ids), V), float32
    steps = torch.stack(captured)  # (len(new_ids), V), float64
    assert steps.dtype == torch.float64 and steps.shape == hf.shape == (len(new_ids), hf.shape[1]), (
        steps.dtype, steps.shape, hf.shape)
    assert torch.equal(steps.float(), hf), (steps.float() - hf).abs().max()
    # Greedy on the raw logits: every emitted id is the argmax of the logits recorded for it, in
    # float32 as HF chose it and in float64 as written.
    assert hf.argmax(-1).tolist() == new_ids, (hf.argmax(-1).tolist(), new_ids)
    assert steps.argmax(-1).tolist() == new_ids, (steps.argmax(-1).tolist(), new_ids)
    # Only the last id may be EOS; anything shorter than the budget must end in EOS.
    assert not any(t in eos for t in new_ids[:-1]), new_ids
    assert len(new_ids) == MAX_NEW_TOKENS or new_ids[-1] in eos, new_ids
    prefill = model(input_ids=input_ids).logits[0]  # (len(ids), V)
    # Cross-check the cached decode against full recomputation over prompt + generated ids.
    full = model(input_ids=out.sequences[:, : len(ids) + len(new_ids) - 1]).logits[0, len(ids) - 1:]
    recompute_err = (full - steps).abs().max().item()
    assert recompute_err < 1e-9, recompute_err
    RECOMPUTE_ERR[0] = max(RECOMPUTE_ERR[0], recompute_err)
    gaps = [top2_gap(r) for r in steps]
    maxabs = [r.abs().max().item() for r in steps]
    return {
        "text": text,
        "ids": ids,
        "new_ids": new_ids,
        "step_logits": steps.tolist(),
        "prefill_logits": prefill.tolist(),
        "min_margin": min(gaps),
        "min_rel_margin": min(g / m for g, m in zip(gaps, maxabs)),
        "max_abs_logit": max(maxabs),
    }


def dump(path, obj):
    """JSON with each logits row on a line of its own (diffable, and still plain JSON)."""
    lines = ["{"]
    head = [k for k in obj if k != "prompts"]
    for k in head:
        lines.append(f" {json.dumps(k)}: {json.dumps(obj[k])},")
    lines.append(' "prompts": [')
    for i, p in enumerate(obj["prompts"]):
        lines.append("  {")
        keys = list(p)
        for j, k in enumerate(keys):
            sep = "," if j + 1 < len(keys) else ""
            if k in ("step_logits", "prefill_logits"):
                rows = [f"    {json.dumps(r)}" for r in p[k]]
                lines.append(f"   {json.dumps(k)}: [\n" + ",\n".join(rows) + f"\n   ]{sep}")
            else:
                lines.append(f"   {json.dumps(k)}: {json.dumps(p[k])}{sep}")
        lines.append("  }" + ("," if i + 1 < len(obj["prompts"]) else ""))
    lines.append(" ]")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    assert json.load(open(path)) == obj


def best_triple(texts, lengths, score):
    """The one-prompt-per-bin choice with the largest score (its worst min_rel_margin)."""
    bins = [[t for t in texts if lo <= lengths[t] <= hi] for lo, hi in BINS]
    assert all(bins), ("empty length bin", [(lo, hi) for (lo, hi), b in zip(BINS, bins) if not b])
    return max(itertools.product(*bins), key=score)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    results, eos = {}, {}
    for name in MODELS:
        model, tok = load(name)
        eos[name] = eos_ids(model)
        results[name] = {t: run(model, tok, t) for t in CANDIDATES}
    lengths = {t: len(results[MODELS[0]][t]["ids"]) for t in CANDIDATES}
    for name in MODELS:
        assert all(len(results[name][t]["ids"]) == lengths[t] for t in CANDIDATES), name

    print(f"candidates (prompt tokens; min relative margin per model {MODELS}):")
    for t in CANDIDATES:
        rel = " ".join(f"{results[m][t]['min_rel_margin']:.2e}" for m in MODELS)
        print(f"  {lengths[t]:3d}  {rel}  {t!r}")

    common = best_triple(CANDIDATES, lengths,
                         lambda tr: min(results[m][t]["min_rel_margin"] for m in MODELS for t in tr))
    common_ok = all(results[m][t]["min_rel_margin"] >= REL_MARGIN for m in MODELS for t in common)
    chosen = {}
    for name in MODELS:
        if common_ok:
            chosen[name] = common
        else:
            chosen[name] = best_triple(CANDIDATES, lengths,
                                       lambda tr: min(results[name][t]["min_rel_margin"] for t in tr))
    print("same prompts for every model" if common_ok else
          "WARNING: no prompt set passes for every model; choosing per model")

    for name in MODELS:
        prompts = [results[name][t] for t in chosen[name]]
        obj = {
            "model": name,
            "dtype": "float64",
            "max_new_tokens": MAX_NEW_TOKENS,
            "eos_token_id": eos[name],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "prompts": prompts,
        }
        path = os.path.join(OUT, name + ".json")
        dump(path, obj)
        worst = min(p["min_rel_margin"] for p in prompts)
        print(f"{name}: {os.path.relpath(path)} ({os.path.getsize(path)} bytes)")
        for p in prompts:
            hit = p["new_ids"][-1] in eos[name]
            print(f"  prompt {len(p['ids']):2d} tokens, {len(p['new_ids']):2d} new, "
                  f"eos {'hit' if hit else 'not hit'}, min rel margin {p['min_rel_margin']:.3e}, "
                  f"min margin {p['min_margin']:.3e}, max|logit| {p['max_abs_logit']:.3f}  {p['text']!r}")
        if worst < REL_MARGIN:
            print(f"  WARNING: {name}: min relative margin {worst:.3e} < {REL_MARGIN:g}; an f32 "
                  f"implementation may legitimately pick a different token at that step")
    print(f"cached decode vs full forward: max |diff| {RECOMPUTE_ERR[0]:.2e}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The RoPE-scaling oracle: logits of the llama fixture under each `rope_scaling` type this tool
implements, computed by transformers in float64 on the oracle's token batch.

Run by hand (never in CI), from the repository root, after tools/make_fixtures.py and
tools/make_oracle.py (it reuses tests/fixtures/oracle/tokens.json):
    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch transformers tokenizers safetensors
    /tmp/fx/bin/python tools/make_rope_oracle.py

Writes tests/fixtures/oracle/rope/{type}.json (the config.json of the llama fixture with that
`rope_scaling`, in the transformers 4.x spelling real Llama 3.1 configs use) and
tests/fixtures/oracle/rope/{type}.safetensors (F32 `logits`, (B, T, V)). The scaling parameters are
chosen small (an original context of 16 tokens) so that every branch of each type is taken by the
fixture's 16-wide heads within the batch's 12 positions; the script checks that transformers applied
the type and that the logits differ from the default RoPE's.

Also tests/fixtures/oracle/rope/mistral-window.{json,safetensors}: the mistral fixture with a
`sliding_window` of 12 tokens, the batch's length (see `sliding_window` below).
"""
import json
import os
import shutil
import tempfile

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
OUT = os.path.join(ROOT, "oracle", "rope")
SCALINGS = {
    "linear": {"rope_type": "linear", "factor": 8.0},
    "dynamic": {"rope_type": "dynamic", "factor": 4.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16},
    "yarn": {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 16,
             "beta_fast": 8.0, "beta_slow": 1.0},
}


def logits_of(folder, ids):
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").double()
    model.eval()
    with torch.no_grad():
        return model, model(input_ids=ids).logits


def logits_with_config(src, config, ids):
    """The model of fixture folder `src` with `config` as its config.json."""
    with tempfile.TemporaryDirectory() as tmp:
        for f in os.listdir(src):
            if f != "config.json":
                shutil.copy(os.path.join(src, f), tmp)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        return logits_of(tmp, ids)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    with open(os.path.join(ROOT, "oracle", "tokens.json")) as f:
        ids = torch.tensor(json.load(f))
    src = os.path.join(ROOT, "llama")
    with open(os.path.join(src, "config.json")) as f:
        base = json.load(f)
    _, default = logits_of(src, ids)
    for name, scaling in SCALINGS.items():
        config = dict(base)
        config.pop("rope_parameters", None)
        config["rope_theta"] = 10000.0
        config["rope_scaling"] = scaling
        model, logits = logits_with_config(src, config, ids)
        assert model.model.rotary_emb.rope_type == name, model.model.rotary_emb.rope_type
        # In the terms of the Rust check: the largest logit difference over the largest |logit|.
        change = ((logits - default).abs().max() / default.abs().max()).item()
        if name == "dynamic":
            # NTK scaling starts past max_position_embeddings: within it, the default RoPE.
            assert change < 1e-12, change
        else:
            assert change > 4e-3, (name, change)  # four times the check's tolerance
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(config, f, indent=1, sort_keys=True)
        save_file({"logits": logits.float().contiguous()}, os.path.join(OUT, name + ".safetensors"))
        print(f"{name:8} attention scaling {model.model.rotary_emb.attention_scaling:.6f} "
              f"change from default {change:.4f}")


def sliding_window(ids):
    """Mistral with a sliding window as long as the batch's sequences (12): transformers' logits
    equal the full-attention ones — the window changes nothing within it, which is why this tool
    honours `sliding_window` by refusing longer sequences — while a window one token shorter does
    change them (so the fixture would catch a window applied one token early)."""
    src = os.path.join(ROOT, "mistral")
    with open(os.path.join(src, "config.json")) as f:
        base = json.load(f)
    seq = ids.shape[1]
    out = {}
    for window in (None, seq, seq - 1):
        config = dict(base, sliding_window=window)
        _, out[window] = logits_with_config(src, config, ids)
        if window == seq:
            with open(os.path.join(OUT, "mistral-window.json"), "w") as f:
                json.dump(config, f, indent=1, sort_keys=True)
            save_file({"logits": out[window].float().contiguous()},
                      os.path.join(OUT, "mistral-window.safetensors"))
    assert (out[seq] - out[None]).abs().max().item() == 0.0
    change = ((out[seq - 1] - out[None]).abs().max() / out[None].abs().max()).item()
    assert change > 1e-3, change
    print(f"mistral  sliding window {seq}: equal to full attention; window {seq - 1}: change {change:.4f}")


if __name__ == "__main__":
    main()
    with open(os.path.join(ROOT, "oracle", "tokens.json")) as f:
        sliding_window(torch.tensor(json.load(f)))

#!/usr/bin/env python3
"""Round trip through the `bitnet` binary, checked by PyTorch/transformers (run by hand, never in CI).

For each fixture and packing: `bitnet pack` then `bitnet unpack`; then transformers loads the unpacked
folder as an ordinary model, and every weight must equal what PyTorch computes independently from the
original model: γ·q for the projections (absmean: γ = max(mean|W|, 1e-5), q = clamp(round(W/γ), −1, 1),
torch.round being half-to-even), the original tensor for everything else. Finally the unpacked model
runs a forward pass. Usage, from the repository root:
    cargo build --release -p bitnet-cli
    /tmp/fx/bin/python tools/check_unpack.py [path/to/bitnet]
"""
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BITNET = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "bitnet")
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def absmean(w):
    g = w.abs().mean().clamp(min=1e-5)
    return g * torch.round(w / g).clamp(-1, 1)


def check(fixture, packing):
    src = os.path.join(ROOT, "tests", "fixtures", fixture)
    with tempfile.TemporaryDirectory() as tmp:
        packed = os.path.join(tmp, "m.bitnet.safetensors")
        out = os.path.join(tmp, "hf")
        subprocess.run([BITNET, "pack", src, "--out", packed, "--packing", packing], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([BITNET, "unpack", packed, "--out", out], check=True, stdout=subprocess.DEVNULL)
        orig = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
        got = AutoModelForCausalLM.from_pretrained(out).eval()
        worst = 0.0
        n = 0
        for (name, w), (name2, u) in zip(orig.state_dict().items(), got.state_dict().items()):
            assert name == name2, (name, name2)
            want = absmean(w) if any(p in name for p in PROJ) and name.endswith(".weight") else w
            diff = (u - want).abs().max().item()
            worst = max(worst, diff)
            assert torch.allclose(u, want, rtol=1e-5, atol=1e-7), f"{fixture}: {name} differs by {diff}"
            n += 1
        ids = torch.tensor([[0, 5, 17, 42, 7, 99]])
        with torch.no_grad():
            logits = got(ids).logits
        assert torch.isfinite(logits).all()
        print(f"{fixture:14s} {packing:5s}: transformers loaded the unpacked folder "
              f"({type(got).__name__}, {n} tensors); max |unpacked − γ·q| = {worst:.2e}; "
              f"forward pass logits {tuple(logits.shape)} finite")


def main():
    for fixture, packing in [("llama", "2bit"), ("llama-bf16", "trit5"), ("qwen2", "2bit"),
                             ("qwen2-sharded", "trit5"), ("mistral", "2bit")]:
        check(fixture, packing)
    print("all round trips match")


if __name__ == "__main__":
    main()

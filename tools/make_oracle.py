#!/usr/bin/env python3
"""The training oracle: logits, loss and every parameter's gradient of each fixture model on a fixed
token batch, computed by PyTorch/transformers in float64, with every linear projection a BitLinear
(DESIGN.md §2: W_eff = W + λ·(Q(W) − W), straight-through, so dL/dW = dL/dW_eff).

Run by hand (never in CI), from the repository root, after tools/make_fixtures.py:
    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch transformers tokenizers safetensors
    /tmp/fx/bin/python tools/make_oracle.py

Writes:
  tests/fixtures/oracle/tokens.json                  the batch: a list of equal-length token-id lists
                                                     (the format of `bitnet grads --tokens`)
  tests/fixtures/oracle/{model}/{variant}.safetensors  F32 tensors:
      logits (B, T, V); loss (1,); grad.{Hugging Face parameter name} for every trainable parameter
  tests/fixtures/oracle/oracle.json                  per model and variant: λ, quantizer, options, loss
for model in llama, qwen2 (tied embeddings, q/k/v biases), mistral, and the variants
  lambda0                   λ = 0: the model as it is
  absmean-l0.5, absmean-l1  absmean codes, γ = max(mean|W|, 1e-5)
  threshold-l1              threshold codes, Δ = 0.7·mean|W|, scale = mean|W| over the non-zero codes
  absmean-l0.5-postnorm     with the post-attention RMSNorm (eps 1e-6, gain 1, trained) after every
                            o_proj, before the residual add; its gain is model.layers.{i}.post_attn_norm.weight
  absmean-l0.5-subln        with SubLN: an RMSNorm (the config's eps, trained) on the input of every
                            o_proj and down_proj, gains model.layers.{i}.self_attn.attn_sub_norm.weight and
                            model.layers.{i}.mlp.ffn_sub_norm.weight, drawn as 1 + 0.1·N(0, 1) (stored in
                            the file as param.{name}, so that a test can use the same values)
  absmean-l0.5-a8           W1.58A8: every projection's input rounded to 8 bits per token (absmax,
                            s = 127 / max(|x|, 1e-5), round half to even, clamp to [-128, 127], / s —
                            transformers' BitLinear activation quantization), straight-through
  absmean-l0.5-kd           distillation: 0.5·CE + 0.5·KL(p_teacher ‖ p_student) at temperature 2
  absmean-l1-kd-only        distillation alone: KL at temperature 1, λ = 1
  absmean-l0.5-kd-top8      as absmean-l0.5-kd, the teacher restricted to its 8 most likely tokens
                            (p_teacher = softmax over those 8 of logits / T; 0 elsewhere)
                            (the teacher: the same model at λ = 0, frozen; p = softmax(logits / T))
The loss is the mean cross-entropy of logits[:, :-1] against tokens[:, 1:] over every position
(loss mask `all`), and the KL's mean over the same positions. Embeddings, norms, biases and
lm_head stay full precision.
"""
import json
import os
import shutil

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
OUT = os.path.join(ROOT, "oracle")
MODELS = ["llama", "qwen2", "mistral"]
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VARIANTS = {
    "lambda0": dict(lam=0.0, quantizer="absmean", postnorm=False),
    "absmean-l0.5": dict(lam=0.5, quantizer="absmean", postnorm=False),
    "absmean-l1": dict(lam=1.0, quantizer="absmean", postnorm=False),
    "threshold-l1": dict(lam=1.0, quantizer="threshold", postnorm=False),
    "absmean-l0.5-postnorm": dict(lam=0.5, quantizer="absmean", postnorm=True),
    "absmean-l0.5-subln": dict(lam=0.5, quantizer="absmean", postnorm=False, subln=True),
    "absmean-l0.5-a8": dict(lam=0.5, quantizer="absmean", postnorm=False, act8=True),
    "absmean-l0.5-kd": dict(lam=0.5, quantizer="absmean", postnorm=False,
                            kd=dict(temperature=2.0, weight=0.5, ce_weight=0.5)),
    "absmean-l1-kd-only": dict(lam=1.0, quantizer="absmean", postnorm=False,
                               kd=dict(temperature=1.0, weight=1.0, ce_weight=0.0)),
    "absmean-l0.5-kd-top8": dict(lam=0.5, quantizer="absmean", postnorm=False,
                                 kd=dict(temperature=2.0, weight=0.5, ce_weight=0.5, topk=8)),
}
TEXTS = [
    "Instruction: Write a haiku about the sea.\nResponse: Waves fold into foam",
    "Instruction: Solve this math problem: what is 12 times 7?\nResponse: 84",
]
SEQ = 12


def ternary(w, quantizer):
    """Q(W) = scale·q, DESIGN.md §2."""
    a = w.abs()
    if quantizer == "absmean":
        gamma = torch.clamp(a.mean(), min=1e-5)
        return gamma * torch.clamp(torch.round(w / gamma), -1, 1)
    delta = 0.7 * a.mean()
    keep = a > delta
    q = torch.sign(w) * keep
    scale = a[keep].mean() if keep.any() else torch.zeros((), dtype=w.dtype)
    return scale * q


def act_quant8(x):
    """Per-token 8-bit absmax rounding, straight-through (its gradient is the identity)."""
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    q = (x * s).round().clamp(-128, 127) / s
    return x + (q - x).detach()


def bitlinear(module, lam, quantizer, act8=False):
    """Replaces module.forward by the λ-blended product with a straight-through estimator."""

    def forward(x):
        if act8:
            x = act_quant8(x)
        w = module.weight
        w_eff = w + lam * (ternary(w, quantizer) - w).detach()
        return F.linear(x, w_eff, module.bias)

    module.forward = forward


class RMSNorm(torch.nn.Module):
    def __init__(self, size, eps, generator=None):
        super().__init__()
        gain = torch.ones(size, dtype=torch.float64)
        if generator is not None:
            gain = gain + 0.1 * torch.randn(size, generator=generator, dtype=torch.float64)
        self.weight = torch.nn.Parameter(gain)
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def load(name, variant):
    path = os.path.join(ROOT, name)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").double()
    model.train()  # no dropout in these configs; gradients on
    for mname, module in model.named_modules():
        if mname.split(".")[-1] in PROJECTIONS:
            bitlinear(module, variant["lam"], variant["quantizer"], variant.get("act8", False))
    if variant["postnorm"]:
        for layer in model.model.layers:
            layer.post_attn_norm = RMSNorm(model.config.hidden_size, 1e-6)
            norm = layer.post_attn_norm
            layer.self_attn.o_proj.register_forward_hook(lambda m, inp, out, norm=norm: norm(out))
    if variant.get("subln"):
        g = torch.Generator().manual_seed(7)
        cfg = model.config
        eps = cfg.rms_norm_eps
        for layer in model.model.layers:
            head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
            layer.self_attn.attn_sub_norm = RMSNorm(cfg.num_attention_heads * head_dim, eps, g)
            layer.mlp.ffn_sub_norm = RMSNorm(cfg.intermediate_size, eps, g)
            for proj, norm in [(layer.self_attn.o_proj, layer.self_attn.attn_sub_norm),
                               (layer.mlp.down_proj, layer.mlp.ffn_sub_norm)]:
                proj.register_forward_pre_hook(lambda m, args, norm=norm: (norm(args[0]),))
    return model


def main():
    torch.manual_seed(0)
    for name in MODELS:  # (not OUT as a whole: oracle/rope is make_rope_oracle.py's)
        shutil.rmtree(os.path.join(OUT, name), ignore_errors=True)
    os.makedirs(OUT, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(os.path.join(ROOT, "tokenizer"))
    batch = [tok(t)["input_ids"][:SEQ] for t in TEXTS]
    assert all(len(b) == SEQ for b in batch), batch
    with open(os.path.join(OUT, "tokens.json"), "w") as f:
        json.dump(batch, f)
    ids = torch.tensor(batch)
    summary = {"torch": torch.__version__, "tokens": batch, "models": {}}
    for name in MODELS:
        os.makedirs(os.path.join(OUT, name))
        summary["models"][name] = {}
        for vname, variant in VARIANTS.items():
            model = load(name, variant)
            logits = model(input_ids=ids).logits
            flat = logits[:, :-1].reshape(-1, logits.shape[-1])
            loss = F.cross_entropy(flat, ids[:, 1:].reshape(-1))
            kd = variant.get("kd")
            if kd:
                with torch.no_grad():
                    teacher = load(name, VARIANTS["lambda0"])(input_ids=ids).logits
                t = kd["temperature"]
                log_s = F.log_softmax(flat / t, dim=-1)
                teacher = teacher[:, :-1].reshape(flat.shape)
                if "topk" in kd:
                    top, top_ids = teacher.topk(kd["topk"], dim=-1)
                    log_t = F.log_softmax(top / t, dim=-1)
                    log_s = log_s.gather(-1, top_ids)
                else:
                    log_t = F.log_softmax(teacher / t, dim=-1)
                kl = (log_t.exp() * (log_t - log_s)).sum(-1).mean()
                loss = kd["ce_weight"] * loss + kd["weight"] * kl
            loss.backward()
            tensors = {"logits": logits.detach().float().contiguous(),
                       "loss": loss.detach().float().reshape(1)}
            for pname, p in model.named_parameters():
                assert p.grad is not None, pname
                tensors["grad." + pname] = p.grad.float().contiguous()
                if "sub_norm" in pname:
                    tensors["param." + pname] = p.detach().float().contiguous()
            save_file(tensors, os.path.join(OUT, name, vname + ".safetensors"))
            summary["models"][name][vname] = dict(variant, loss=loss.item(),
                                                  grads=sum(1 for k in tensors if k.startswith("grad.")))
            print(f"{name:8} {vname:22} loss {loss.item():.6f}")
    with open(os.path.join(OUT, "oracle.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"oracle written to {OUT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

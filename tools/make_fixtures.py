#!/usr/bin/env python3
"""Writes the tiny model fixtures under tests/fixtures with transformers' own save_pretrained.

Run by hand (never in CI), from the repository root:
    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch transformers tokenizers safetensors
    /tmp/fx/bin/python tools/make_fixtures.py

Writes:
  tests/fixtures/tokenizer/       a byte-level BPE tokenizer of about 300 tokens
  tests/fixtures/llama/           LlamaForCausalLM, f32, untied embeddings
  tests/fixtures/llama-bf16/      the same model saved in bfloat16
  tests/fixtures/qwen2/           Qwen2ForCausalLM, f32, tied embeddings, q/k/v biases
  tests/fixtures/qwen2-sharded/   the same Qwen2 model in several shards with an index
  tests/fixtures/mistral/         MistralForCausalLM, f32
  tests/fixtures/expected.json    what transformers reports for each (parameter counts, shapes)
All models: hidden 64, 2 layers, 4 heads, 2 KV heads, intermediate 128; norm weights and biases are
randomized so that a loader that ignores them is caught.
"""
import json
import os
import shutil

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoModelForCausalLM, LlamaConfig, MistralConfig, PreTrainedTokenizerFast,
                          Qwen2Config)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
VOCAB = 300

CORPUS = [
    "Instruction: Write a Python function to reverse a string.\nResponse: def reverse(s): return s[::-1]",
    "Instruction: Solve this math problem: what is 12 times 7?\nResponse: 12 times 7 is 84.",
    "Instruction: Write a haiku about the sea.\nResponse: Waves fold into foam, the tide keeps its patient time.",
    "Instruction: Answer this question with step-by-step reasoning: why is the sky blue?\n"
    "Response: Sunlight scatters off air molecules; blue light scatters most, so the sky looks blue.",
    "The quick brown fox jumps over the lazy dog. 0123456789 ,.;:!?()[]{}<>+-*/=_'\"",
] * 20


def make_tokenizer(out_dir):
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - 3, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(out_dir)
    return fast


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))


def save(model, tok, name, **kw):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, **kw)
    tok.save_pretrained(out)
    return out


def main():
    torch.manual_seed(0)
    tok_dir = os.path.join(ROOT, "tokenizer")
    shutil.rmtree(tok_dir, ignore_errors=True)
    tok = make_tokenizer(tok_dir)
    vocab = len(tok)
    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  rms_norm_eps=1e-5, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id)
    specs = [
        ("llama", LlamaConfig(tie_word_embeddings=False, **common), 1),
        ("qwen2", Qwen2Config(tie_word_embeddings=True, **common), 2),
        ("mistral", MistralConfig(tie_word_embeddings=False, sliding_window=128, **common), 3),
    ]
    expected = {"transformers": transformers.__version__, "torch": torch.__version__, "models": {}}
    for name, cfg, seed in specs:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg).float()
        randomize(model, seed)
        model.eval()
        save(model, tok, name)
        entry = {
            "architecture": type(model).__name__,
            "num_parameters": model.num_parameters(),
            "vocab_size": vocab,
            "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
        }
        expected["models"][name] = entry
        if name == "llama":
            save(model.to(torch.bfloat16), tok, "llama-bf16")
            expected["models"]["llama-bf16"] = dict(entry)
        if name == "qwen2":
            save(model, tok, "qwen2-sharded", max_shard_size="150KB")
            expected["models"]["qwen2-sharded"] = dict(entry)
    with open(os.path.join(ROOT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print(f"fixtures written to {ROOT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

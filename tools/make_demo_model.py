#!/usr/bin/env python3
"""Trains the built-in demo model: a tiny Llama with its own byte-level BPE tokenizer that answers
five kinds of small tasks (addition, subtraction, the larger of two numbers, sorting three words,
repeating four words), so that a workshop can watch what ternarization does to a model that knows
something.

Run by hand (never in CI), from the repository root (about 15 minutes on 2 CPU cores):
    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch transformers tokenizers safetensors
    /tmp/fx/bin/python tools/make_demo_model.py
(`--templates-only` rewrites templates.json alone, from the same split, without training.)

Writes crates/bitnet-pipeline/assets/demo/:
  config.json, generation_config.json, tokenizer.json, model.safetensors   the model (f32)
  tasks.jsonl       20 held-out tasks of each kind (never trained on): {"instruction", "output", "domain"} records,
                    scored by `bitnet eval --task` (exact match of the greedy answer)
  templates.json    self-generation templates whose tasks the model was trained on
  report.json       the exact-match accuracy this script measured on tasks.jsonl, per prompt format

The model is trained on every training task in both prompt formats the tool uses — the
self-generation prompt `Instruction: {instruction}\\nResponse: {output}` and the training text
`### Instruction:\\n{instruction}\\n\\n### Response:\\n{output}` — each followed by the end token.
Every response is a sentence of at least 8 words and 32 characters, so that the self-generation
filters keep the model's own answers.
"""
import json
import math
import os
import random
import shutil
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "bitnet-pipeline",
                   "assets", "demo")
VOCAB = 512
WORDS = ["apple", "bird", "cat", "dog", "egg", "fish", "goat", "hat", "ink", "jam", "kite", "lamp",
         "moon", "nest", "owl", "pear"]
HELD_OUT = 0.1
# Arithmetic has few distinct tasks (441 additions, 231 subtractions): they are repeated in the
# training data so that the model learns the operation rather than the other tasks' words.
REPEAT = {"addition": 4, "subtraction": 8}
SHIPPED = 20
TEMPLATE_TASKS = 100
EOS, PAD = "</s>", "<pad>"


def tasks():
    """Every (domain, instruction, output) of the five task kinds."""
    out = []
    for a in range(21):
        for b in range(21):
            out.append(("addition", f"Add {a} and {b}.",
                        f"{a} plus {b} equals {a + b}, so the answer is {a + b}."))
            if b <= a:
                out.append(("subtraction", f"Subtract {b} from {a}.",
                            f"{a} minus {b} equals {a - b}, so the answer is {a - b}."))
    for a in range(41):
        for b in range(41):
            if a != b:
                hi, lo = max(a, b), min(a, b)
                out.append(("comparison", f"Which is larger, {a} or {b}?",
                            f"{hi} is larger than {lo}, so the answer is {hi}."))
    rng = random.Random(1)
    for ws in [(a, b, c) for a in WORDS for b in WORDS for c in WORDS if len({a, b, c}) == 3]:
        s = sorted(ws)
        out.append(("sorting", f"Sort the words: {' '.join(ws)}.",
                    f"The words in alphabetical order are {s[0]}, {s[1]}, {s[2]}."))
    for _ in range(2000):
        ws = [rng.choice(WORDS) for _ in range(4)]
        out.append(("copying", f"Repeat the words: {' '.join(ws)}.",
                    f"Here are the words again, in order: {' '.join(ws)}."))
    seen, unique = set(), []
    for t in out:
        if t[1] not in seen:
            seen.add(t[1])
            unique.append(t)
    return unique


def selfgen_text(instruction, output):
    return f"Instruction: {instruction}\nResponse: {output}"


def selfgen_prompt(instruction):
    return f"Instruction: {instruction}\nResponse:"


def train_text(instruction, output):
    return f"### Instruction:\n{instruction}\n\n### Response:\n{output}"


def train_prompt(instruction):
    return f"### Instruction:\n{instruction}\n\n### Response:\n"


def make_tokenizer(texts):
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<s>", EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def greedy(model, tok, prompts, eos, max_new=40):
    """Greedy answers to `prompts`: text up to the end token, cut at the first newline, trimmed."""
    answers = []
    with torch.no_grad():
        for p in prompts:
            ids = tok.encode(p).ids
            x = torch.tensor([ids])
            past, new = None, []
            for _ in range(max_new):
                o = model(input_ids=x, past_key_values=past, use_cache=True)
                past = o.past_key_values
                t = int(o.logits[0, -1].argmax())
                if t == eos:
                    break
                new.append(t)
                x = torch.tensor([[t]])
            answers.append(tok.decode(new).split("\n")[0].strip())
    return answers


def accuracy(model, tok, items, prompt, eos):
    got = greedy(model, tok, [prompt(i) for _, i, _ in items], eos)
    return sum(g == o for g, (_, _, o) in zip(got, items)) / len(items), got


def write_templates(train):
    """Self-generation templates: one domain per task kind, TEMPLATE_TASKS tasks of each that the
    model was trained on."""
    forms = {"addition": ("Add {task}.", lambda i: i[len("Add "):-1]),
             "subtraction": ("Subtract {task}.", lambda i: i[len("Subtract "):-1]),
             "comparison": ("Which is larger, {task}?", lambda i: i[len("Which is larger, "):-1]),
             "sorting": ("Sort the words: {task}.", lambda i: i[len("Sort the words: "):-1]),
             "copying": ("Repeat the words: {task}.", lambda i: i[len("Repeat the words: "):-1])}
    domains, pick = [], random.Random(2)
    for d, (form, task_of) in forms.items():
        ts = [task_of(i) for i in sorted(pick.sample([i for dd, i, _ in train if dd == d], TEMPLATE_TASKS))]
        assert all(form.replace("{task}", t) in {i for _, i, _ in train} for t in ts)
        domains.append({"name": d, "form": form, "tasks": ts})
    with open(os.path.join(OUT, "templates.json"), "w") as f:
        json.dump({"domains": domains}, f, indent=1)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    rng = random.Random(0)
    all_tasks = tasks()
    rng.shuffle(all_tasks)
    by_domain = {}
    for t in all_tasks:
        by_domain.setdefault(t[0], []).append(t)
    train, held = [], []
    for d, items in by_domain.items():
        n = max(20, int(len(items) * HELD_OUT))
        held += items[:n]
        train += items[n:]
    if "--templates-only" in sys.argv:
        write_templates(train)
        return
    texts = [f(i, o) for d, i, o in train for _ in range(REPEAT.get(d, 1))
             for f in (selfgen_text, train_text)]
    tok = make_tokenizer(texts)
    eos = tok.token_to_id(EOS)
    pad = tok.token_to_id(PAD)
    seqs = [tok.encode(t).ids + [eos] for t in texts]
    print(f"{len(train)} training tasks, {len(held)} held out, {len(seqs)} sequences, "
          f"longest {max(map(len, seqs))} tokens, vocab {tok.get_vocab_size()}")

    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=96, intermediate_size=256,
                      num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=24, max_position_embeddings=256, rms_norm_eps=1e-5,
                      rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=0,
                      eos_token_id=eos, pad_token_id=pad)
    model = LlamaForCausalLM(cfg).float()
    print(f"{model.num_parameters()} parameters")
    steps, bsz, lr = int(os.environ.get("DEMO_STEPS", 8000)), 64, 3e-3
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    model.train()
    for step in range(steps):
        warm = min(1.0, (step + 1) / 200)
        for g in opt.param_groups:
            g["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        batch = [seqs[rng.randrange(len(seqs))] for _ in range(bsz)]
        n = max(map(len, batch))
        ids = torch.tensor([s + [pad] * (n - len(s)) for s in batch])
        labels = torch.tensor([s + [-100] * (n - len(s)) for s in batch])
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    model.eval()

    # The shipped task file: the first SHIPPED held-out tasks of each kind.
    shipped = sorted(t for d in by_domain for t in [x for x in held if x[0] == d][:SHIPPED])
    report = {"parameters": model.num_parameters(), "steps": steps, "held_out_tasks": len(held),
              "torch": torch.__version__}
    acc, _ = accuracy(model, tok, shipped, train_prompt, eos)
    report["tasks_jsonl_exact_match"] = acc
    print(f"tasks.jsonl ({len(shipped)} tasks): exact match {acc:.3f}")
    for name, prompt in (("training_format", train_prompt), ("selfgen_format", selfgen_prompt)):
        acc, got = accuracy(model, tok, held, prompt, eos)
        report[name] = {"exact_match": acc}
        for d in by_domain:
            items = [(t, g) for t, g in zip(held, got) if t[0] == d]
            report[name][d] = sum(g == t[2] for t, g in items) / len(items)
        print(name, json.dumps(report[name]))
        wrong = [(t[1], g) for t, g in zip(held, got) if g != t[2]][:5]
        print("  wrong, e.g.:", wrong)

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    model.save_pretrained(OUT)
    for f in os.listdir(OUT):
        if f not in ("config.json", "generation_config.json", "model.safetensors"):
            os.remove(os.path.join(OUT, f))
    tok.save(os.path.join(OUT, "tokenizer.json"))
    with open(os.path.join(OUT, "tasks.jsonl"), "w") as f:
        for d, i, o in shipped:
            f.write(json.dumps({"instruction": i, "input": "", "output": o, "domain": d}) + "\n")
    write_templates(train)
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"demo model written to {OUT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

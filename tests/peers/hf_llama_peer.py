#!/usr/bin/env python3
"""The Hugging Face peer for `yocotron bench`: LlamaForCausalLM of a recipe's shape, trained the way a
PyTorch user would — fp32 master weights, bf16 autocast, SDPA attention, torch.compile, fused AdamW with
the recipe's betas/eps/weight decay, gradient clipping — on random tokens at the same micro/global batch.
Prints one JSON line with tokens/s per GPU, step time, MFU (same formula as yocotron) and peak memory.

  python3 tests/peers/hf_llama_peer.py --recipe recipes/tinyllama-1.1b/transformer.yaml \
      --set train.global_batch=8 --steps 20

Recipe keys the file does not set take yocotron's defaults from `--yocotron BIN config` when given,
else from the few defaults below (the ones a shape needs).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM


DEFAULTS = {"model": {"norm_eps": 1e-5, "rope_theta": 10000.0, "init_std": 0.02},
            "train": {"seed": 1234, "lr": 1e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1,
                      "grad_clip": 1.0}}


def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def load_recipe(path):
    with open(path) as f:
        r = yaml.safe_load(f) or {}
    base = r.pop("base", None)
    return merge(load_recipe(os.path.join(os.path.dirname(path), base)) if base else {}, r)


def resolved_recipe(yocotron, recipe, sets):
    if yocotron:
        cmd = [yocotron, "config", "--config", recipe] + [x for s in sets for x in ("--set", s)]
        return yaml.safe_load(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    r = merge(json.loads(json.dumps(DEFAULTS)), load_recipe(recipe))
    for s in sets:
        key, value = s.split("=", 1)
        *path, leaf = key.split(".")
        node = r
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--yocotron", help="resolve the recipe with this yocotron binary (optional)")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps (includes torch.compile)")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()

    r = resolved_recipe(args.yocotron, args.recipe, args.set)
    m, t, d = r["model"], r["train"], r["data"]
    # PyYAML reads YAML 1.1, where "1e-05" is a string: make the numbers numbers.
    for sec, keys in ((m, ("norm_eps", "rope_theta", "init_std")),
                      (t, ("lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip"))):
        for k in keys:
            sec[k] = float(sec[k])
    if m["arch"] != "transformer":
        print(f"note: the peer is a plain Llama; recipe arch is {m['arch']}", file=sys.stderr)
    cfg = LlamaConfig(vocab_size=m["vocab_size"], hidden_size=m["d_model"], intermediate_size=m["d_ffn"],
                      num_hidden_layers=m["n_layers"], num_attention_heads=m["n_heads"],
                      num_key_value_heads=m["n_kv_heads"], max_position_embeddings=m["max_seq_len"],
                      rms_norm_eps=m["norm_eps"], rope_theta=m["rope_theta"], tie_word_embeddings=False,
                      attn_implementation="sdpa", initializer_range=m["init_std"])
    torch.manual_seed(t["seed"])
    model = LlamaForCausalLM(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t["eps"],
                            weight_decay=t["weight_decay"], fused=True)
    step_model = model if args.no_compile else torch.compile(model)
    B, G, T = t["micro_batch"], t["global_batch"], d["seq_len"]
    accum = G // B
    tokens = torch.randint(0, m["vocab_size"], (B, T), device="cuda")

    def step():
        for _ in range(accum):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = step_model(input_ids=tokens, labels=tokens).loss / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    tps = args.steps * G * T / secs
    n = sum(p.numel() for p in model.parameters()) - m["vocab_size"] * m["d_model"]
    flops = 6 * n + 12 * m["n_layers"] * m["d_model"] * T
    print(json.dumps({"part": "train", "peer": "hf-llama" + ("" if args.no_compile else "+torch.compile"),
                      "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "micro_batch": B, "global_batch": G, "seq_len": T, "steps": args.steps,
                      "tokens_per_s_per_gpu": tps, "step_ms": 1000 * secs / args.steps,
                      "mfu": tps * flops / 989e12, "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The Hugging Face peer for `yocotron bench --part prefill|decode`: LlamaForCausalLM of a recipe's shape
(random weights, bf16, SDPA) generating the way a PyTorch user would, with the same protocol:

  prefill: time to first token, `generate(prompt, max_new_tokens=1)`, per prompt length (batch 1, and the
           largest batch that fits with --batch max).
  decode:  a 5-token prompt then exactly N new tokens per sequence, greedy, with transformers' static KV
           cache (which generate compiles with torch.compile unless --no-compile); the largest batch whose
           cache of 5 + N tokens fits, found by doubling then bisecting. A static cache attends over all of
           its slots at every step, so a step costs the same at any length: --sample-steps M times M
           steps and scales to N (the figure says so), instead of running all N.

  python3 tests/peers/hf_generate_peer.py --part decode --recipe recipes/tinyllama-1.1b/transformer.yaml \
      --yocotron build-gpu/bin/yocotron --lengths 2048,8192 --sample-steps 64

Prints one JSON line shaped like yocotron's (results: one object per length and batch).
"""
import argparse
import json
import os
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM, StaticCache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_llama_peer import resolved_recipe  # noqa: E402


def build(r, max_len):
    m = r["model"]
    cfg = LlamaConfig(vocab_size=m["vocab_size"], hidden_size=m["d_model"], intermediate_size=m["d_ffn"],
                      num_hidden_layers=m["n_layers"], num_attention_heads=m["n_heads"],
                      num_key_value_heads=m["n_kv_heads"], max_position_embeddings=max_len,
                      rms_norm_eps=float(m["norm_eps"]), rope_theta=float(m["rope_theta"]),
                      tie_word_embeddings=False, attn_implementation="sdpa")
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()


def fits(fn):
    try:
        fn()
        torch.cuda.synchronize()
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def largest_batch(probe, ceiling):
    ok, bad, b = 0, ceiling + 1, 1
    while b <= ceiling:
        if not fits(lambda: probe(b)):
            bad = b
            break
        ok, b = b, b * 2
    while bad - ok > 1:
        mid = ok + (bad - ok) // 2
        if fits(lambda: probe(mid)):
            ok = mid
        else:
            bad = mid
    return ok


def timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["prefill", "decode"], required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--yocotron", help="resolve the recipe with this yocotron binary (optional)")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--lengths", default=None)
    ap.add_argument("--batch", default="max")
    ap.add_argument("--max-batch", type=int, default=4096)
    ap.add_argument("--prompt-tokens", type=int, default=5)
    ap.add_argument("--sample-steps", type=int, default=0, help="decode: time this many steps and scale to N")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()

    r = resolved_recipe(args.yocotron, args.recipe, args.set)
    V = r["model"]["vocab_size"]
    default = "2048,4096,8192,16384,32768" if args.part == "prefill" else "2048,4096,8192"
    lengths = [int(x) for x in (args.lengths or default).split(",")]
    P = args.prompt_tokens
    model = build(r, max(lengths) + P + 1)
    out = {"part": args.part, "peer": "hf-llama generate" if args.part == "prefill" else
           "hf-llama static cache" + ("" if args.no_compile else " + torch.compile"),
           "device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": []}

    if args.part == "prefill":
        def prefill(b, n):
            ids = torch.randint(0, V, (b, n), device="cuda")
            with torch.no_grad():
                model.generate(ids, max_new_tokens=1, do_sample=False)
        for n in lengths:
            batches = [1] if args.batch == "max" else [int(args.batch)]
            if args.batch == "max":
                batches.append(largest_batch(lambda b: prefill(b, n), args.max_batch))
            for i, b in enumerate(batches):
                prefill(b, n)
                ms = sorted(timed(lambda: prefill(b, n)) for _ in range(args.repeats))[args.repeats // 2]
                out["results"].append({"prompt_tokens": n, "batch": b, "largest_batch": i == 1, "ttft_ms": ms,
                                       "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30})
                torch.cuda.empty_cache()
    else:
        # How generate compiles: HF's default (torch.compile, mode reduce-overhead = CUDA graphs), inductor
        # without CUDA graphs, or not at all. A mode that fails on this node falls through to the next.
        all_modes = ["off"] if args.no_compile else ["reduce-overhead", "default", "off"]
        from transformers import CompileConfig

        def run(b, n, steps, mode):
            ids = torch.randint(0, V, (b, P), device="cuda")
            try:  # transformers >= 5 sizes the batch lazily; 4.x wants it up front
                cache = StaticCache(config=model.config, max_cache_len=P + n)
            except TypeError:
                cache = StaticCache(config=model.config, max_batch_size=b, max_cache_len=P + n, device="cuda",
                                    dtype=torch.bfloat16)
            kw = ({"disable_compile": True} if mode == "off"
                  else {"compile_config": CompileConfig(fullgraph=False, dynamic=False, mode=mode)})
            with torch.no_grad():
                model.generate(ids, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                               past_key_values=cache, **kw)
        for n in lengths:
            batches = [1] if args.batch == "max" else [int(args.batch)]
            if args.batch == "max":
                # Probes run eagerly: compiling for every batch size tried would take minutes; a compiled
                # step needs no more memory than an eager one.
                batches.append(largest_batch(lambda b: run(b, n, 2, "off"), args.max_batch))
            for i, searched in enumerate(batches):
                b = searched
                steps = n if args.sample_steps <= 0 else min(n, args.sample_steps)
                # Warm-up (and compilation), then the timed runs; the compiled graph can hold more than the
                # eager probe did, so at the largest batch a run out of memory backs off by 5% until the
                # runs fit. A mode that fails otherwise (on this node, or inside CUDA graph trees after an
                # out-of-memory) falls through to the next, for this point only.
                modes = list(all_modes)
                while True:
                    try:
                        if modes[0] != "off":
                            fits(lambda: run(b, n, 2, modes[0]))
                        torch.cuda.reset_peak_memory_stats()
                        first = timed(lambda: run(b, n, 1, modes[0]))
                        total = timed(lambda: run(b, n, steps, modes[0]))
                        break
                    except torch.OutOfMemoryError:
                        torch.cuda.empty_cache()
                        if i == 0 or b <= 1:
                            raise SystemExit(f"out of memory at batch {b}")
                        b = max(1, int(b * 0.95))
                    except Exception as e:  # noqa: BLE001 - report it and measure the next mode instead
                        if modes[0] == "off":
                            raise
                        print(f"torch.compile mode={modes[0]} failed at batch {b}: {type(e).__name__}: "
                              f"{str(e)[:300]}", file=sys.stderr)
                        modes.pop(0)
                        torch._dynamo.reset()
                        torch.cuda.empty_cache()
                mode = modes[0]
                # prefill + first token, then (steps - 1) decode steps scaled to the n - 1 of the protocol
                est = first + (total - first) * (n - 1) / max(steps - 1, 1)
                out["results"].append({"gen_tokens": n, "prompt_tokens": P, "batch": b, "largest_batch": i == 1,
                                       "peer": "hf-llama static cache" + (" (eager)" if mode == "off" else
                                                                          f" + torch.compile mode={mode}"),
                                       **({"searched_batch": searched} if b != searched else {}),
                                       "prefill_ms": first, "total_ms": est,
                                       "tokens_per_s": b * n / (est / 1000),
                                       "timing": "every step" if steps == n else f"{steps} steps scaled to {n}",
                                       "kv_cache_bytes": 2 * r["model"]["n_layers"] * r["model"]["n_kv_heads"]
                                       * (r["model"]["d_model"] // r["model"]["n_heads"]) * 2 * b * (P + n),
                                       "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30})
                print("point: " + json.dumps(out["results"][-1]), file=sys.stderr, flush=True)  # kept if cut off
                torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == "__main__":
    main()

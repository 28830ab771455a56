#!/usr/bin/env python3
"""Parity of every exported architecture in Hugging Face transformers with yocotron.

For a recipe: `yocotron export-hf RECIPE --out A`; then, so that the KV mixing weights are not at
their initial values (YOCO++ = YOCO there), every k_mix/v_mix tensor of A is replaced by random
values; `yocotron export-hf hf:A --out B --sample-tokens N` loads those weights and writes our fp32
logits for 2 x N random tokens (yocotron_sample.safetensors). B is loaded with
AutoModelForCausalLM.from_pretrained(B, trust_remote_code=True) (`transformer`: LlamaForCausalLM)
and run on the same tokens in fp32; the largest absolute logit difference must be <= --tolerance.
Then generate() (greedy, no KV cache) must continue a prompt with the argmax of the logits.
Needs torch + transformers (+ safetensors); prints one line per recipe; exits 1 on any failure.

  python3 tests/parity/hf_export_parity.py --yocotron build-gpu/bin/yocotron recipes/tiny/*.yaml
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77  # ctest's SKIP_RETURN_CODE for the `hf_python` test (tests/CMakeLists.txt)
try:
    import torch
    from safetensors.torch import load_file, save_file
    import transformers  # noqa: F401
except ImportError as e:
    if "--skip-if-missing" in sys.argv:
        print(f"SKIPPED: {e.name or e} is not installed for {sys.executable} (needs torch, safetensors, transformers)")
        sys.exit(SKIP)
    raise


def export(yocotron, source, out, sets=(), tokens=0):
    cmd = [yocotron, "export-hf", source, "--out", out]
    for s in sets:
        cmd += ["--set", s]
    if tokens:
        cmd += ["--sample-tokens", str(tokens)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def perturb_mixing_weights(directory, seed):
    """Random k_mix/v_mix (fp32), as training would leave them; returns how many were changed."""
    path = os.path.join(directory, "model.safetensors")
    tensors = load_file(path)
    gen = torch.Generator().manual_seed(seed)
    changed = 0
    for name, t in tensors.items():
        if name.endswith("k_mix") or name.endswith("v_mix"):
            tensors[name] = (t + 0.3 * torch.randn(t.shape, generator=gen)).contiguous()
            changed += 1
    save_file(tensors, path, metadata={"format": "pt"})
    return changed


def check(args, recipe):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        first, final = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        export(args.yocotron, recipe, first, args.set)
        changed = perturb_mixing_weights(first, args.seed)
        export(args.yocotron, "hf:" + first, final, tokens=args.tokens)
        with open(os.path.join(final, "config.json")) as f:
            cfg = json.load(f)
        arch = cfg.get("yocotron_arch", "transformer")
        sample = load_file(os.path.join(final, "yocotron_sample.safetensors"))
        # transformers 5 names the dtype argument `dtype` (4.x: `torch_dtype`).
        fp32 = {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": torch.float32}
        if arch == "transformer":
            assert "auto_map" not in cfg and not os.path.exists(os.path.join(final, "modeling_yocotron.py"))
            model = LlamaForCausalLM.from_pretrained(final, attn_implementation="eager", **fp32)
        else:
            model = AutoModelForCausalLM.from_pretrained(final, trust_remote_code=True, **fp32)
            assert type(model).__name__ == "YocotronForCausalLM", type(model).__name__
        model.to(args.device).eval()
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        ids = sample["input_ids"].to(args.device)
        with torch.no_grad():
            theirs = model(ids).logits.float().cpu()
        ours = sample["logits"]
        diff = (theirs - ours).abs().max().item()
        ok = diff <= args.tolerance

        # generate() without a KV cache: greedy continuation = argmax of the full forward.
        gen_ok, gen_note = True, "skipped"
        if args.generate:
            prompt = ids[:, :5]
            model.generation_config.eos_token_id = None  # random weights: never stop early on EOS
            try:
                with torch.no_grad():
                    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3,
                                         do_sample=False, pad_token_id=0)
                    step = prompt
                    for _ in range(3):
                        nxt = model(step).logits[:, -1].argmax(-1, keepdim=True)
                        step = torch.cat([step, nxt], dim=1)
                gen_ok = out.shape == step.shape and torch.equal(out.cpu(), step.cpu())
                gen_note = "ok" if gen_ok else "MISMATCH"
            except Exception as e:  # report and go on with the other recipes
                gen_ok, gen_note = False, f"ERROR({type(e).__name__}: {e})"
        n_params = sum(p.numel() for p in model.parameters())
        print(f"arch={arch} recipe={recipe} params={n_params} mixing_tensors_perturbed={changed} tokens=2x{args.tokens} "
              f"max_abs_logit={ours.abs().max().item():.4f} max_abs_diff={diff:.3e} tolerance={args.tolerance:g} "
              f"generate={gen_note} {'PASS' if ok and gen_ok else 'FAIL'}", flush=True)
        return ok and gen_ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipes", nargs="+", help="recipe files (each exported with its initial weights)")
    ap.add_argument("--yocotron", required=True)
    ap.add_argument("--set", action="append", default=[], help="recipe override for every recipe, repeatable")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-generate", dest="generate", action="store_false")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-if-missing", action="store_true",
                    help=f"exit {SKIP} (skipped) when torch/safetensors/transformers are not installed")
    args = ap.parse_args()
    failed = []
    for r in args.recipes:
        try:
            if not check(args, r):
                failed.append(r)
        except Exception as e:  # one line per recipe, then the next
            print(f"recipe={r} FAIL {type(e).__name__}: {e}", flush=True)
            failed.append(r)
    print(f"{len(args.recipes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

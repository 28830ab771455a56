#!/usr/bin/env python3
"""Parity of yocotron's `transformer` with Hugging Face LlamaForCausalLM.

Exports a recipe's model with `yocotron export-hf --sample-tokens N` (which also writes our fp32
logits for 2 x N random tokens), loads the directory with transformers.LlamaForCausalLM, runs the
same tokens in fp32 and prints the largest absolute logit difference. Exits 1 above --tolerance.
Needs torch + transformers (GPU nodes); not part of ctest.

  python3 tests/parity/hf_llama_parity.py --yocotron build-gpu/bin/yocotron \
      --recipe recipes/tinyllama-1.1b/transformer.yaml
"""
import argparse
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import LlamaForCausalLM


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--yocotron", required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--set", action="append", default=[], help="recipe override, repeatable")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as out:
        cmd = [args.yocotron, "export-hf", args.recipe, "--out", out, "--sample-tokens", str(args.tokens)]
        for s in args.set:
            cmd += ["--set", s]
        subprocess.run(cmd, check=True)
        sample = load_file(f"{out}/yocotron_sample.safetensors")
        model = LlamaForCausalLM.from_pretrained(out, torch_dtype=torch.float32, attn_implementation="eager")
        model.to(args.device).eval()
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        with torch.no_grad():
            theirs = model(sample["input_ids"].to(args.device)).logits.float().cpu()
        ours = sample["logits"]
        diff = (theirs - ours).abs().max().item()
        scale = ours.abs().max().item()
        n_params = sum(p.numel() for p in model.parameters())
        print(f"recipe={args.recipe} params={n_params} tokens=2x{args.tokens} "
              f"max_abs_logit={scale:.4f} max_abs_diff={diff:.3e} tolerance={args.tolerance:g}")
        return 0 if diff <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())

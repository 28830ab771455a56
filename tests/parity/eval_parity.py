#!/usr/bin/env python3
"""Parity of `yocotron eval` with a plain Hugging Face computation of lm-eval's rules.

Reads `yocotron eval ... --dump-choices CHOICES --json > RESULT` output, then for every choice:
tokenizes (context, continuation) with SentencePiece by lm-eval 0.4.9.1's _encode_pair rules
(trailing whitespace of the context moves to the continuation; context and context+continuation
encoded separately; no BOS; an empty context is [BOS]) and checks the ids against ours; runs the
exported model (transformers.LlamaForCausalLM, fp32, eager attention) over
(context + continuation)[-(max_len+1):][:-1], sums the log-softmax at the continuation's positions
and checks it against our log-likelihood (--tolerance, default 1e-4). Then recomputes acc and
acc_norm per task (argmax of sums; of sums / len(choice) in characters; WinoGrande form: acc only)
and checks them against RESULT exactly. Exits 1 on any difference. Needs torch, transformers and
sentencepiece (GPU nodes); not part of ctest.

  yocotron export-hf RUN --out /tmp/hf
  yocotron eval hf:/tmp/hf --tasks TASK.jsonl --device cuda --dtype fp32 --json \
      --dump-choices /tmp/choices.jsonl > /tmp/eval.json
  python3 tests/parity/eval_parity.py --hf /tmp/hf --choices /tmp/choices.jsonl --result /tmp/eval.json
"""
import argparse
import json
import sys
from collections import defaultdict

import sentencepiece as spm


def encode_pair(sp, context, continuation, bos):
    if context == "":
        return [bos], sp.encode(continuation)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = sp.encode(context + continuation)
    ctx = sp.encode(context)
    return (ctx if ctx else [bos]), whole[len(ctx):]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", required=True, help="the export-hf directory (model + tokenizer.model)")
    ap.add_argument("--choices", required=True, help="yocotron eval --dump-choices output")
    ap.add_argument("--result", required=True, help="yocotron eval --json output")
    ap.add_argument("--tokenizer", help="default: HF/tokenizer.model")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--device", default="cuda", help="cuda or cpu")
    args = ap.parse_args()
    import torch  # here, so that encode_pair can be imported where only sentencepiece is installed
    from transformers import LlamaForCausalLM

    sp = spm.SentencePieceProcessor(model_file=args.tokenizer or f"{args.hf}/tokenizer.model")
    bos = sp.bos_id() if sp.bos_id() >= 0 else sp.eos_id()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = LlamaForCausalLM.from_pretrained(args.hf, torch_dtype=torch.float32, attn_implementation="eager")
    model.to(args.device).eval()
    max_len = model.config.max_position_embeddings

    rows = [json.loads(line) for line in open(args.choices) if line.strip()]
    worst, bad_ids, n = 0.0, 0, 0
    lls = defaultdict(lambda: defaultdict(dict))  # task -> item -> choice -> ll
    info = {}
    with torch.no_grad():
        for r in rows:
            ctx, cont = encode_pair(sp, r["context"], r["continuation"], bos)
            if ctx != r["context_ids"] or cont != r["continuation_ids"]:
                bad_ids += 1
                if bad_ids <= 5:
                    print(f"token ids differ: {r['task']} item {r['item']} choice {r['choice']}: "
                          f"ours {r['context_ids']} | {r['continuation_ids']}, sentencepiece {ctx} | {cont}")
            whole = (ctx + cont)[-(max_len + 1):]
            inp = torch.tensor([whole[:-1]], device=args.device)
            logp = torch.log_softmax(model(inp).logits[0].float(), dim=-1)
            k = len(cont)
            pos = torch.arange(len(whole) - 1 - k, len(whole) - 1, device=args.device)
            ll = logp[pos, torch.tensor(cont, device=args.device)].sum().item()
            diff = abs(ll - r["loglik"])
            worst = max(worst, diff)
            n += 1
            lls[r["task"]][r["item"]][r["choice"]] = ll
            info[(r["task"], r["item"], r["choice"])] = r

    result = json.load(open(args.result))
    acc_mismatch = 0
    for task, items in lls.items():
        right = right_norm = 0
        # the WinoGrande form: contexts differ between choices (acc only)
        multiple_contexts = any(info[(task, i, 0)]["context"] != info[(task, i, 1)]["context"] for i in items)
        for i, choices in items.items():
            v = [choices[c] for c in sorted(choices)]
            gold = info[(task, i, 0)]["gold"]
            right += int(max(range(len(v)), key=lambda c: (v[c], -c)) == gold)
            lens = [len(info[(task, i, c)]["continuation"]) - 1 for c in sorted(choices)]  # minus the " " delimiter
            norm = [v[c] / lens[c] for c in range(len(v))]
            right_norm += int(max(range(len(v)), key=lambda c: (norm[c], -c)) == gold)
        acc, acc_norm = right / len(items), right_norm / len(items)
        ours = result["tasks"][task]
        ok = ours["acc"] == acc and (multiple_contexts or ours["acc_norm"] == acc_norm)
        acc_mismatch += not ok
        print(f"{task}: acc {acc:.4f} (ours {ours['acc']:.4f})"
              + ("" if multiple_contexts else f", acc_norm {acc_norm:.4f} (ours {ours['acc_norm']:.4f})")
              + ("" if ok else "  MISMATCH"))
    print(f"{n} choices: largest |log-likelihood difference| {worst:.3g} (tolerance {args.tolerance}); "
          f"{bad_ids} with different token ids")
    return 0 if worst <= args.tolerance and bad_ids == 0 and acc_mismatch == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reads a run's RUN/tb/ event files with TensorBoard's own reader (EventAccumulator) and checks that
every scalar equals the run's metrics.jsonl (as float32, the precision of TensorBoard scalars).
Needs the `tensorboard` package (installed on the GPU nodes).  Usage: check_tensorboard.py RUN_DIR..."""
import json
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def check(run):
    acc = EventAccumulator(f"{run}/tb", size_guidance={"scalars": 0})
    acc.Reload()
    tb = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
    checked, bad = 0, []
    for line in open(f"{run}/metrics.jsonl"):
        row = json.loads(line)
        # Tags are the metrics.jsonl names; the step is the event's, tokens comes with training rows.
        for tag, value in row.items():
            if tag == "step" or value is None or (tag == "tokens" and "loss" not in row):
                continue
            got = tb.get(tag, {}).get(row["step"])
            checked += 1
            if got is None or got != f32(value):
                bad.append(f"step {row['step']} {tag}: tensorboard {got} vs metrics.jsonl {value}")
    print(f"{run}: {checked} scalars in {len(tb)} tags read back by TensorBoard's EventAccumulator, "
          f"{len(bad)} mismatches")
    for b in bad[:10]:
        print("  " + b)
    return not bad and checked > 0


if __name__ == "__main__":
    sys.exit(0 if all([check(r) for r in sys.argv[1:]]) else 1)

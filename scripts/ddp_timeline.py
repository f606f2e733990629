#!/usr/bin/python3
"""scripts/ddp_timeline.py — the per-bucket all-reduce timeline of a data-parallel run.

  /usr/bin/python3 scripts/ddp_timeline.py RUN_DIR [--step N] [--require-overlap]

Reads RUN_DIR/ddp_timeline.jsonl (written by `ttt train ... --set dist.timeline=true`, rank 0) and
prints, for one step (default: the last), every gradient bucket in launch order: its size, when
its last gradient was complete (ready), when its all-reduce started and ended, in milliseconds
relative to the end of backward (negative = before it; on NCCL these are GPU times from CUDA
events). --require-overlap exits 1 unless some bucket's all-reduce started before the end of
backward (i.e. the all-reduce overlapped backward).
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--step", type=int, default=None)
    ap.add_argument("--require-overlap", action="store_true")
    a = ap.parse_args()
    path = os.path.join(a.run_dir, "ddp_timeline.jsonl")
    if not os.path.exists(path):
        sys.exit(f"ddp_timeline: no {path} (train with --set dist.timeline=true under a launcher or dist.backend)")
    rows = [json.loads(line) for line in open(path) if line.strip()]
    if not rows:
        sys.exit(f"ddp_timeline: {path} is empty")
    row = rows[-1] if a.step is None else next((r for r in rows if r["step"] == a.step), None)
    if row is None:
        sys.exit(f"ddp_timeline: step {a.step} is not in {path} (steps {rows[0]['step']}..{rows[-1]['step']})")
    print(f"step {row['step']}: ms relative to the end of backward (negative = before it)")
    print(f"{'bucket':>6} {'MB':>8} {'params':>6} {'ready':>10} {'start':>10} {'end':>10}  launched from")
    for b in row["buckets"]:
        print(f"{b['bucket']:>6} {b['bytes'] / 2**20:>8.2f} {b['params']:>6} {b['ready_ms']:>10.3f} "
              f"{b['start_ms']:>10.3f} {b['end_ms']:>10.3f}  {'hook' if b['launched_in_backward'] else 'finish()'}")
    buckets = row["buckets"]
    early = sum(1 for b in buckets if b["start_ms"] < 0)
    last_end = max(b["end_ms"] for b in buckets)
    busy_before = sum(max(0.0, min(b["end_ms"], 0.0) - b["start_ms"]) for b in buckets if b["start_ms"] < 0)
    print(f"{early} of {len(buckets)} buckets started before the end of backward "
          f"({busy_before:.3f} ms of all-reduce before it); the last ended at {last_end:+.3f} ms")
    if a.require_overlap and early == 0:
        sys.exit("ddp_timeline: no all-reduce started before the end of backward (no overlap)")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""scripts/synthetic_data.py — prepared data for GPU checks on machines without network: a
corpus of random words (1,500 JSON documents of 100–400 words from 3,000 made-up words, ~2.5M
characters, the same for a given seed), a 512-piece tokenizer trained on it, and HDF5 shards
(8 validation documents). Enough for throughput and for comparing loss curves, not for perplexity.

  /usr/bin/python3 scripts/synthetic_data.py WORK --ttt build/bin/ttt [--seed 0]

writes WORK/corpus/synthetic.jsonl, WORK/tok512.model and WORK/data (reused when present).
"""
import argparse
import json
import os
import random
import subprocess


def write_corpus(path, seed):
    rng = random.Random(seed)
    syll = ["ka", "lo", "mi", "ne", "tu", "ra", "shi", "po", "el", "an", "or", "um", "ve", "di", "qa"]
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 3))) for _ in range(3000)]
    with open(path, "w") as f:
        for _ in range(1500):
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(100, 400)))}) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", help="directory for the corpus, tokenizer and shards")
    ap.add_argument("--ttt", required=True, help="the ttt binary")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = os.path.join(args.work, "data")
    if os.path.isdir(data):
        return
    corpus = os.path.join(args.work, "corpus")
    os.makedirs(corpus, exist_ok=True)
    write_corpus(os.path.join(corpus, "synthetic.jsonl"), args.seed)
    tok = os.path.join(args.work, "tok512.model")
    quiet = {"stdout": subprocess.DEVNULL, "check": True}
    subprocess.run([args.ttt, "tokenizer", "train", "--input", corpus, "--vocab-size", "512", "--out", tok], **quiet)
    subprocess.run([args.ttt, "data", "prepare", "--input", corpus, "--tokenizer", tok, "--out", data,
                    "--val-docs", "8"], **quiet)


if __name__ == "__main__":
    main()

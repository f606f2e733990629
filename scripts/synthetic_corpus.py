#!/usr/bin/python3
"""scripts/synthetic_corpus.py — a corpus of random words for GPU checks on machines without
network: 1,500 JSON documents of 100–400 words from 3,000 made-up words (~2.5M characters), the
same for a given seed. Enough for throughput and for comparing loss curves, not for perplexity.

  /usr/bin/python3 scripts/synthetic_corpus.py OUT.jsonl [--seed 0]
"""
import argparse
import json
import random


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="the .jsonl file to write")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    syll = ["ka", "lo", "mi", "ne", "tu", "ra", "shi", "po", "el", "an", "or", "um", "ve", "di", "qa"]
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 3))) for _ in range(3000)]
    with open(args.out, "w") as f:
        for _ in range(1500):
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(100, 400)))}) + "\n")


if __name__ == "__main__":
    main()

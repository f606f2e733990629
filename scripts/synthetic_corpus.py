#!/usr/bin/python3
"""scripts/synthetic_corpus.py — a seeded corpus of made-up words, one JSON document per line
({"text": ...}), for checks on machines without network (scripts/gpu_*_check.sh).

  /usr/bin/python3 scripts/synthetic_corpus.py OUT.jsonl [--docs 1500] [--words 100 400] [--sentences]

Words are 1-3 random syllables from a fixed list (3000 words); a document has a uniform number of
words in [--words MIN MAX]; --sentences groups them into capitalised sentences of 6-18 words
ending with '.' (S-NIAH's text haystack puts the needle between sentences).
"""
import argparse
import json
import random


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--words", type=int, nargs=2, default=[100, 400], metavar=("MIN", "MAX"))
    ap.add_argument("--sentences", action="store_true")
    args = ap.parse_args()
    rng = random.Random(0)
    syll = ["ka", "lo", "mi", "ne", "tu", "ra", "shi", "po", "el", "an", "or", "um", "ve", "di", "qa"]
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 3))) for _ in range(3000)]
    with open(args.out, "w") as f:
        for _ in range(args.docs):
            n = rng.randint(*args.words)
            if not args.sentences:
                text = " ".join(rng.choice(words) for _ in range(n))
            else:
                sentences, count = [], 0
                while count < n:
                    k = min(rng.randint(6, 18), n - count)
                    sentences.append(" ".join(rng.choice(words) for _ in range(k)).capitalize() + ".")
                    count += k
                text = " ".join(sentences)
            f.write(json.dumps({"text": text}) + "\n")


if __name__ == "__main__":
    main()

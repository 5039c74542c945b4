#!/usr/bin/env bash
# infinity-emb in a virtualenv of its own (its pins clash with xscore's), for
#   python -m benchmarks.compare --infinity-venv DIR  (DIR defaults to .peers/infinity)
# torch is pinned to the CPU build xscore's export extra uses; the other pins are the versions
# infinity-emb 0.0.78 still imports (newer click, transformers and sentence-transformers break it).
set -euo pipefail
dest="${1:-.peers/infinity}"
python3 -m venv "$dest"
"$dest/bin/pip" install -q "infinity-emb[server,torch]==0.0.78" "torch==2.13.0" "click<8.2" \
  "transformers<4.58" "sentence-transformers<5.2"
"$dest/bin/infinity_emb" --help > /dev/null
echo "infinity-emb ready in $dest"

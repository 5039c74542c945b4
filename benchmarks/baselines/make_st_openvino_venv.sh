#!/usr/bin/env bash
# sentence-transformers with its OpenVINO backend (optimum-intel; datasets for its int8 export's
# calibration) in a virtualenv of its own, for
#   python -m benchmarks.compare --st-openvino-venv DIR  (DIR defaults to .peers/st-openvino)
# torch is pinned to the CPU build xscore's export extra uses, and transformers and sentence-transformers
# to the versions xscore's own extras resolve (a newer transformers breaks sentence-transformers here).
set -euo pipefail
dest="${1:-.peers/st-openvino}"
python3 -m venv "$dest"
"$dest/bin/pip" install -q "sentence-transformers[openvino]>=5.0,<5.8" datasets "huggingface-hub<1.0" "transformers>=4.45,<4.58" "torch==2.13.0"
# a torchvision built for another torch comes along and breaks `import transformers`; nothing here needs it
"$dest/bin/pip" uninstall -q -y torchvision || true
"$dest/bin/python" -c "from sentence_transformers import CrossEncoder; import optimum.intel"
echo "sentence-transformers with OpenVINO ready in $dest"

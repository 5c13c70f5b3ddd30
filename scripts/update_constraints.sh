#!/usr/bin/env bash
# Regenerate constraints.txt: the exact package set CI (and the README's commands) install.
# Run it on purpose, when a dependency should move; then run `bash .ci/run` and commit both.
#
#   bash scripts/update_constraints.sh            # newest releases, OpenCV held below 5.1
#
# torch and torchvision are left out: the README's commands name them (2.14.1 + 0.29.1 for
# the tests, 2.13.0 for the CPU-only demo), and a pin here would fight the demo's. OpenCV is
# held below 5.1 because 5.1 removed the TensorFlow importer that cv2.dnn_superres needs
# for .pb files, and the tests compare against cv2.dnn_superres (tests marked opencv_pb).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$venv/bin/python" -m pip install -q -e '.[dev,spandrel,ray,openvino]' 'opencv-contrib-python-headless<5.1'
{
    echo "# The exact package set CI installs (pip install -c constraints.txt ...)."
    echo "# Made by scripts/update_constraints.sh on $(date -u +%Y-%m-%d) with $("$venv/bin/python" --version);"
    echo "# change it on purpose with that script, never by hand. torch and torchvision are pinned"
    echo "# by the install commands themselves (README, .ci/run)."
    "$venv/bin/python" -m pip freeze --all --exclude-editable | grep -v -i -E '^(torch|torchvision)=='
} > constraints.txt
rm -rf "$(dirname "$venv")"
echo "constraints.txt: $(grep -c '==' constraints.txt) pins"

#!/usr/bin/env bash
# Train the shipped weights in two lanes (one thread each), resuming where a lane stopped.
# Usage: scripts/train_shipped.sh  (from the repository root; logs in runs/*.log)
set -u
cd "$(dirname "$0")/.."
lane() {
  for cfg in "$@"; do
    name=$(basename "$cfg" .toml)
    if [ -f "runs/$name/report.json" ] && [ -f "vsr/weights/$name.safetensors" ]; then continue; fi
    mkdir -p runs
    python scripts/train.py "$cfg" --resume --threads 1 --no-progress \
      --export "vsr/weights/$name.safetensors" >> "runs/$name.log" 2>&1
  done
}
lane configs/train/espcn_x3.toml configs/train/espcn_x2.toml configs/train/espcn_x4.toml &
lane configs/train/fsrcnn_x3.toml configs/train/fsrcnn_x2.toml configs/train/fsrcnn_x4.toml &
wait

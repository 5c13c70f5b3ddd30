#!/usr/bin/env bash
# Train the shipped weights in two lanes (one thread each), resuming where a lane stopped.
# Usage: scripts/train_shipped.sh  (from the repository root; logs in runs/*.log)
# Each entry is RECIPE:WEIGHTS. A recipe that starts from other weights (init "weights:...")
# comes after the one that writes them, in the same lane or, for edsr_x3, well after it.
set -u
cd "$(dirname "$0")/.."
lane() {
  for entry in "$@"; do
    cfg="configs/train/${entry%%:*}.toml"
    weights="vsr/weights/${entry#*:}.safetensors"
    name=$(basename "$cfg" .toml)
    if [ -f "runs/$name/report.json" ]; then continue; fi
    mkdir -p runs
    python scripts/train.py "$cfg" --resume --threads 1 --no-progress \
      --export "$weights" >> "runs/$name.log" 2>&1
  done
}
lane espcn_x3:espcn_x3 espcn_x2:espcn_x2 espcn_x4:espcn_x4 \
  espcn_x3_more:espcn_x3 espcn_x4_more:espcn_x4 fsrcnn_x4_more:fsrcnn_x4 \
  srcnn_x3:srcnn_x3 edsr_x3:edsr_x3 &
lane fsrcnn_x3:fsrcnn_x3 fsrcnn_x2:fsrcnn_x2 fsrcnn_x4:fsrcnn_x4 \
  edsr_x2:edsr_x2 lapsrn_x2:lapsrn_x2 lapsrn_x4:lapsrn_x4 lapsrn_x8:lapsrn_x8 \
  vdsr:vdsr edsr_x4:edsr_x4 &
wait

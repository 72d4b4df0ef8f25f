#!/usr/bin/env bash
# Run the full benchmark suite on the shipped model and write benchmarks/reports/cpu/.
#
# Data: ../shared/data/smoke5k/val (real labelled photos) when present, else a synthetic
# labelled folder rendered by training.synth. The model is the fp32 one the SDK derives from
# the stored edgeseg/models/edgeseg-unet-r18.fp16.onnx. The PyTorch eager variant needs a
# checkpoint (CKPT=runs/train/model.safetensors, or a training.ship run's RUN/export/model.safetensors);
# the repository no longer stores one. Extra arguments go to `edgeseg bench suite` (e.g. --duration 30, --threads 2).
#
#   benchmarks/run_suite.sh [--checkpoint CKPT] [more suite options]
#
# Run it on an idle machine: another job on the same cores inflates every latency (the
# report records the load average and warns when the machine was busy).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python}"
MODEL="${MODEL:-$("$PY" -c 'from edgeseg.runtime.segmenter import DEFAULT_MODEL; print(DEFAULT_MODEL)')}"
OUT="${OUT:-benchmarks/reports/cpu}"
REAL="${DATA:-../shared/data/smoke5k/val}"
PY="${PYTHON:-python}"
CKPT="${CKPT:-runs/train/model.safetensors}"

if [[ ! -f "$MODEL" ]]; then
  echo "error: $MODEL not found; train and ship a model first (python -m training.train, training/ship.py) or set MODEL=path.onnx" >&2
  exit 2
fi
if [[ -d "$REAL/img" && -d "$REAL/gt" ]]; then
  DATA_DIR="$REAL"
else
  DATA_DIR="$(mktemp -d -t edgeseg-synth-XXXXXX)"
  trap 'rm -rf "$DATA_DIR"' EXIT
  echo "no labelled data at $REAL; rendering a synthetic folder into $DATA_DIR" >&2
  # seeds 500000.. are the held-out synthetic test scenes (training.ship), never trained on
  "$PY" -m training.synth dataset "$DATA_DIR" --count 64 --seed 500000 --size 256 256
fi

EXTRA=()
if [[ -f "$CKPT" && " $* " != *" --checkpoint "* ]]; then
  EXTRA+=(--checkpoint "$CKPT")
fi
mkdir -p "$OUT"
"$PY" -m edgeseg.cli bench suite --model "$MODEL" --data "$DATA_DIR" --out "$OUT" ${EXTRA[@]+"${EXTRA[@]}"} "$@"

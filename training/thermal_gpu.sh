#!/usr/bin/env bash
# The thermal model (issue #38) as one prepared call on a lent GPU (PyTorch + CUDA, no network):
# a fixed step budget on the GPU, then the same ship gate as on the CPU host, on the device's cores.
#
#   on this host, once:  python -m training.ir_backgrounds && python -m training.thermal_real --pack
#                        mkdir -p runs/aside && mv edgeseg/models/*.int8.onnx runs/aside/   # tree + carry < 64 MiB
#   the device call:     bash training/thermal_gpu.sh "$OUT" [STEPS]      carry: data/ir data/thermal_real
#   back here:           mv runs/aside/*.int8.onnx edgeseg/models/
#                        python -m training.thermal_gate --candidate <files_at>/thermal/model.fp16.onnx --ship
#
# What comes back under OUT/thermal: model.fp16.onnx (28 MB: fp16 weights, the temporal metadata),
# record.json, log.jsonl and gate.json (the gate measured on the device; rerun it here to ship).
set -u -o pipefail
OUT=${1:?usage: thermal_gpu.sh OUT [STEPS]}
STEPS=${2:-6000}
BUDGET_MIN=${BUDGET_MIN:-7}
PY=${PY:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT/thermal"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PY -m pip install -q cptv 2>/dev/null || echo "cptv not installable here: the gate's Lepton clips will be reported missing"
$PY -m training.thermal_train --out runs/thermal-gpu --device cuda --steps "$STEPS" --batch 24 --threads 0 \
    --minutes "$BUDGET_MIN" --save-every 500 || exit 1
$PY - <<'PYEOF'
from pathlib import Path
from edgeseg.apps.fp16 import convert_fp16
convert_fp16(Path("runs/thermal-gpu/model.onnx"), Path("runs/thermal-gpu/model.fp16.onnx"))
PYEOF
cp runs/thermal-gpu/model.fp16.onnx runs/thermal-gpu/record.json runs/thermal-gpu/log.jsonl "$OUT/thermal/"
timeout 240 $PY -m training.thermal_gate --candidate runs/thermal-gpu/model.onnx --out "$OUT/thermal/gate.json" \
    || echo "gate did not finish on the device: rerun it on the host"

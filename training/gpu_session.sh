#!/usr/bin/env bash
# One prepared call on a lent GPU machine (PyTorch + CUDA, no network, minutes of device time):
#   1. the paper's recipe:   python -m training.gpu_run ... --epochs 20            -> OUT/paper/
#   2. in the time left, a longer run (batch 32, lr 5e-4, as many epochs as fit)  -> OUT/long/
# Each output folder holds the fp16 weights in pieces, record.json (the exact command, GPU, wall
# time) and history.jsonl; back on the CPU host, `python -m training.ship --run OUT/<run>` ships
# a run only if it beats the bundled model on the held-out train photos.
#
#   bash training/gpu_session.sh OUT [BUDGET_S]     # BUDGET_S: wall seconds for both runs (480)
# Needs the pack (python -m training.pack --out runs/smoke5k_256.tar) and PyTorch alone: with
# --gpu-aug nothing else outside the standard scientific stack is imported.
set -u -o pipefail
OUT=${1:?usage: gpu_session.sh OUT [BUDGET_S]}
BUDGET=${2:-480}
PACK=${PACK:-runs/smoke5k_256.tar}
EPOCHS=${EPOCHS:-20}
PY=${PY:-python3}
EXTRA=${EXTRA:-}  # more gpu_run arguments for both runs (tests: --synth-train 4 --batch 2 --device cpu)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
T0=$(date +%s)
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch, numpy, cv2; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'opencv', cv2.__version__)"
WORKERS=$(( $(nproc) > 8 ? 8 : $(nproc) ))

# keep what comes back small: weights pieces, record.json, history.jsonl (no optimiser state)
collect() {  # collect WORK DEST
    mkdir -p "$2"
    if [ -f "$1/record.json" ]; then
        cp "$1"/weights-*.safetensors "$1/record.json" "$1/history.jsonl" "$2"/
    elif [ -f "$1/last.pt" ]; then  # stopped early: the weights it had, marked as partial
        $PY - "$1" "$2" <<'EOF'
import sys, json, torch
from pathlib import Path
from training.shards import save_pieces
st = torch.load(Path(sys.argv[1]) / "last.pt", map_location="cpu", weights_only=True)
save_pieces(st["model"], Path(sys.argv[2]))
(Path(sys.argv[2]) / "partial.json").write_text(json.dumps({k: st[k] for k in ("stage", "batch", "train_s", "images", "wall_s")}))
EOF
        cp "$1/history.jsonl" "$2"/ 2>/dev/null
    fi
}

echo "== paper recipe: $EPOCHS epochs, batch 16, Adam lr 1e-4"
timeout $(( BUDGET + 60 )) $PY -m training.gpu_run --pack "$PACK" --out /tmp/gpu-paper --epochs "$EPOCHS" \
    --gpu-aug --workers "$WORKERS" $EXTRA
echo "paper run exit $?"
collect /tmp/gpu-paper "$OUT/paper"

# the longer run: epochs from the measured speed and the seconds left (30 s for start-up, the
# synthetic scenes, evaluation and saving; the gas stage counts as ~1.2 smoke epochs)
LONG=$($PY - "$T0" "$BUDGET" <<'EOF'
import json, sys, time
from pathlib import Path
rec = Path("/tmp/gpu-paper/record.json")
if not rec.is_file():
    print(0); raise SystemExit
r = json.loads(rec.read_text())
left = float(sys.argv[2]) - (time.time() - float(sys.argv[1])) - 30
per_epoch = r["pack"]["images"] / r["images_per_s"] * 0.9  # batch 32 is no slower per image than 16
print(max(0, min(100, int(left / per_epoch - 1.2))))
EOF
)
if [ "${LONG:-0}" -ge 25 ]; then
    echo "== longer run: $LONG epochs, batch 32, Adam lr 5e-4"
    timeout $(( BUDGET + 90 - $(date +%s) + T0 )) $PY -m training.gpu_run --pack "$PACK" --out /tmp/gpu-long \
        --epochs "$LONG" --batch 32 --lr 5e-4 --gpu-aug --workers "$WORKERS" $EXTRA
    echo "long run exit $?"
    collect /tmp/gpu-long "$OUT/long"
else
    echo "no time for a longer run (${LONG:-0} epochs would fit)"
fi
echo "session wall $(( $(date +%s) - T0 )) s"
ls -la "$OUT"/*

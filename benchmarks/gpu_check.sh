#!/usr/bin/env bash
# One-GPU check (about 3-5 minutes): the r50 model of the r50 preset trained for 20 iterations on synthetic
# data with Ray Train on the GPU (nccl backend, AMP), then batch inference with two actors sharing the GPU
# (half a GPU each). Prints the step time, the peak GPU memory and the inference frames/s.
#   benchmarks/gpu_check.sh [OUT_DIR]          (PYTHON=... to use another interpreter than .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-$(mktemp -d /tmp/tmtvis-gpu-check-XXXX)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled HF_HUB_OFFLINE=1
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null || { echo "gpu_check: nvidia-smi not found: no GPU here" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: torch sees no GPU')"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl', torch.cuda.nccl.version())"

t0=$(date +%s)
for preset in ytvis ovis uvo; do
  [ -f "$OUT/data/$preset/valid.json" ] || "$PY" -m workflows.cli data synth --preset "$preset" --videos 12 --frames 10 \
      --size 360x640 --out "$OUT/data/$preset" >/dev/null
done
# the r50 preset (model, loss, clips, AMP) on the synthetic datasets of the tiny preset, 1 GPU worker.
"$PY" - "$OUT" <<'PY'
import sys
import yaml
out = sys.argv[1]
r50, tiny = (yaml.safe_load(open(f"tmtvis/configs/{n}.yaml")) for n in ("r50", "tiny"))
cfg = dict(r50, output_dir=f"{out}/runs")
cfg["data"] = dict(tiny["data"], root=f"{out}/data", clip=r50["data"]["clip"])
cfg["taxonomy"] = dict(r50["taxonomy"], clip_weights=None)
cfg["optim"] = dict(r50["optim"], amp=True)
cfg["schedule"] = dict(r50["schedule"], iterations=20, warmup_iters=5)
cfg["train"] = dict(r50["train"], batch_size=2, val_every=0, val_max_videos=4, log_every=5)
cfg["checkpoint"] = dict(r50["checkpoint"], every=20)
cfg["scaling"] = dict(r50["scaling"], workers=1, gpus_per_worker=1, cpus_per_worker=4)
cfg["tracking"] = {"tracking_uri": None, "experiment": "tmtvis-gpu-check", "overlays": 0}
yaml.safe_dump(cfg, open(f"{out}/gpu.yaml", "w"), sort_keys=False)
PY
echo "data and config ready ($(( $(date +%s) - t0 )) s)"

nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$OUT/gpu_memory.log" &
SMI=$!
trap 'kill $SMI 2>/dev/null || true' EXIT
t1=$(date +%s)
"$PY" -m workflows.cli train --config "$OUT/gpu.yaml" --run-dir "$OUT/runs/train" | tee "$OUT/train.log"
t2=$(date +%s)
"$PY" -m workflows.cli infer --checkpoint "$OUT/runs/train" --input "$OUT/data/ytvis/valid.json" \
    --images "$OUT/data/ytvis/JPEGImages" --dataset ytvis_synth --out "$OUT/infer" --actors 2 --gpus-per-actor 0.5 \
    --no-progress | tee "$OUT/infer.log"
t3=$(date +%s)
kill $SMI 2>/dev/null || true

"$PY" - "$OUT" <<'PY'
import json, re, sys
from mlflow.tracking import MlflowClient
out = sys.argv[1]
run = json.load(open(f"{out}/runs/train/mlflow_run.json"))
client = MlflowClient(run["tracking_uri"])
steps = {m.step: m.value for m in client.get_metric_history(run["run_id"], "train.sec_per_iter")}
loss = {m.step: m.value for m in client.get_metric_history(run["run_id"], "train.loss")}
used = [int(x) for x in open(f"{out}/gpu_memory.log").read().split() if x.strip().isdigit()]
fps = re.search(r"\(([\d.]+) frames/s\)", open(f"{out}/infer.log").read())
late = [v for s, v in sorted(steps.items()) if s > 5]  # past the first report (CUDA/cudnn warm-up)
print("gpu_check results")
print(f"  train step time: {sum(late) / max(len(late), 1):.3f} s/iteration after warm-up "
      f"(per report: {', '.join(f'{s}:{v:.3f}' for s, v in sorted(steps.items()))})")
print(f"  train loss: {', '.join(f'{s}:{v:.3f}' for s, v in sorted(loss.items()))}")
print(f"  peak GPU memory used (nvidia-smi, all processes): {max(used) if used else 'n/a'} MiB")
print(f"  inference, 2 actors x 0.5 GPU: {fps.group(1) if fps else 'n/a'} frames/s")
PY
echo "wall: data+config $(( t1 - t0 )) s, train $(( t2 - t1 )) s, infer $(( t3 - t2 )) s; outputs in $OUT"

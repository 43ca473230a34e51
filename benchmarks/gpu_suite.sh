#!/usr/bin/env bash
# The GPU numbers of docs/gpu.md and docs/benchmarks.md, in one go, on a machine with an NVIDIA
# GPU and penspin[gpu] installed (run from the repository root):
#   1. the Warp backend's parity tests on the GPU;
#   2. the task's control steps/s at 1024-16384 envs, every observation on, with and without the
#      CUDA graph (bench_gpu.py);
#   3. how often worlds blow up, random actions and the shipped oracle (bench_stability.py);
#   4. where an oracle training iteration's time goes at 8192 envs (bench_train.py);
#   5. oracle training from scratch at 8192 envs, then a 256-episode evaluation of it.
# Writes suite.log, gpu_throughput.json, the training run's curves (its tb events) and eval.json
# to OUT. Training gets TRAIN_S seconds, or less if the whole suite must end within BUDGET_S.
#   benchmarks/gpu_suite.sh OUT [TRAIN_S] [BUDGET_S]
set -uo pipefail
OUT=${1:?usage: gpu_suite.sh OUT [TRAIN_S] [BUDGET_S]}
TRAIN_S=${2:-600}
BUDGET_S=${3:-0}
PY=${PYTHON:-python3}
PENSPIN=${PENSPIN:-penspin}
RUN=/tmp/penspin-gpu-oracle
mkdir -p "$OUT"
exec > >(tee "$OUT/suite.log") 2>&1
stage() { echo "== $(date +%T) (${SECONDS} s) $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
stage "parity on the GPU"
PENSPIN_WARP_DEVICE=cuda timeout 300 $PY -m pytest -q -p no:cacheprovider tests/test_warp_backend.py
stage "task throughput"
timeout 200 $PY benchmarks/bench_gpu.py --modes graph eager --steps 10 \
  --json "$OUT/gpu_throughput.json"
stage "stability"
timeout 120 $PY benchmarks/bench_stability.py --backends warp-graph warp-eager --device cuda \
  --envs 8192 --steps 100
timeout 60 $PY benchmarks/bench_stability.py --backends warp-graph --device cuda --envs 8192 \
  --steps 100 --policy checkpoints/oracle.pt
stage "training time split, 8192 envs"
timeout 120 $PY benchmarks/bench_train.py --envs 8192 --iterations 4 --variants defaults \
  --set env.backend=warp env.device=cuda --run-dir /tmp/penspin-bench-train
if [ "$BUDGET_S" -gt 0 ] && [ $((BUDGET_S - SECONDS - 90)) -lt "$TRAIN_S" ]; then
  TRAIN_S=$((BUDGET_S - SECONDS - 90))
fi
stage "oracle training from scratch for ${TRAIN_S} s"
timeout -s TERM -k 30 "$TRAIN_S" $PENSPIN train-oracle --run-dir "$RUN" env.backend=warp \
  env.device=cuda env.num_envs=8192 train.progress=false train.save_every=10
stage "evaluation of its last checkpoint"
timeout 80 $PENSPIN eval --checkpoint "$RUN/last.pt" --episodes 256 --out "$OUT/eval.json" \
  backend=warp device=cuda
cp "$RUN"/tb/events.* "$OUT/"
stage done

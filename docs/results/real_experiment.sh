#!/usr/bin/env bash
# Steps 3-4 on the proxy-real world, as in docs/real.md. STUDENT: the simulation student to finetune.
set -euo pipefail
STUDENT=${STUDENT:-checkpoints/student-bc.pt}
OUT=${OUT:-data}
penspin export-replay --oracle checkpoints/oracle.pt --out $OUT/replays.npz pens=all per_pen=12 steps=800
# Collection (seed 0, then seed 7 to top up past 45 successes) on the three collection pens.
penspin replay --trajectories $OUT/replays.npz --out-dir $OUT/real_data replay.pens=collect replay.repeats=6 replay.video_fps=1
penspin replay --trajectories $OUT/replays.npz --out-dir $OUT/real_data replay.pens=collect replay.repeats=1 replay.video_fps=1 robot.proxy.seed=7
for n in 5 15 45; do
  penspin finetune --real-dataset-folder $OUT/real_data --checkpoint-path $STUDENT --run-dir runs/ft-$n train.max_demos=$n --num-epochs 10
done
penspin finetune --real-dataset-folder $OUT/real_data --run-dir runs/ft-scratch-45 train.max_demos=45 --num-epochs 30
# Every row on the same 120 trials (12 start states x 10 pens), evaluation seed 100.
penspin eval --robot proxy --trajectories $OUT/replays.npz --checkpoint replay $STUDENT runs/ft-scratch-45/best.pt \
  runs/ft-5/best.pt runs/ft-15/best.pt runs/ft-45/best.pt checkpoints/oracle.pt robot.proxy.seed=100 \
  --out docs/results/real_proxy.json

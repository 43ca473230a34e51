#!/usr/bin/env bash
# Steps 3-4 on the proxy-real world, as in docs/real.md (about 40 minutes on 2 CPU cores).
set -euo pipefail
OUT=${OUT:-data}
STUDENT=checkpoints/student-dart.pt
penspin export-replay --oracle checkpoints/oracle.pt --out $OUT/replays.npz pens=all per_pen=12 steps=800
# Collection on the three collection pens: placement seed 0 (6 rounds), then seed 7 (1 round).
penspin replay --trajectories $OUT/replays.npz --out-dir $OUT/real_data replay.pens=collect replay.repeats=6 replay.video_fps=1
penspin replay --trajectories $OUT/replays.npz --out-dir $OUT/real_data replay.pens=collect replay.repeats=1 replay.video_fps=1 robot.proxy.seed=7
for n in 5 15 45; do
  penspin finetune --real-dataset-folder $OUT/real_data --checkpoint-path $STUDENT --run-dir runs/ftd-$n train.max_demos=$n --num-epochs 10
done
penspin finetune --real-dataset-folder $OUT/real_data --checkpoint-path $STUDENT --run-dir runs/ftd-45-sim train.max_demos=45 --num-epochs 10 train.sim_oracle=checkpoints/oracle.pt
penspin finetune --real-dataset-folder $OUT/real_data --checkpoint-path checkpoints/student-bc.pt --run-dir runs/ft-45 train.max_demos=45 --num-epochs 10
penspin finetune --real-dataset-folder $OUT/real_data --run-dir runs/ft-scratch-45 train.max_demos=45 --num-epochs 30
# Every row on the same 120 trials (12 start states x 10 pens), evaluation seed 100.
penspin eval --robot proxy --trajectories $OUT/replays.npz --checkpoint replay checkpoints/student-bc.pt $STUDENT \
  runs/ft-scratch-45/best.pt runs/ftd-5/best.pt runs/ftd-15/best.pt runs/ftd-45/best.pt runs/ftd-45-sim/best.pt \
  runs/ft-45/best.pt checkpoints/oracle.pt robot.proxy.seed=100 --out docs/results/real_proxy.json
for s in 0 0.5 1.5 2; do
  penspin eval --robot proxy --trajectories $OUT/replays.npz --checkpoint replay robot.proxy.seed=100 \
    robot.proxy.severity=$s --out docs/results/real_severity_$s.json
done
python scripts/plot_real.py

# The realistic student (touch + camera pen ends), docs/real.md's last results section: the same two
# collection rounds with the camera on and colour off (touch is kept with every demo), then
# finetuning on the first 45 demos, lighter variants chosen on the proxy's seed 50, and the rows on seed 100.
TE=checkpoints/student-tactile-ends.pt
SIM=checkpoints/oracle-arcsine-lr1e-5-run/oracle-17.36M.pt
CAM="replay.pens=collect replay.video_fps=0 replay.camera=true replay.rgb=false"
penspin replay --trajectories $OUT/replays.npz --out-dir $OUT/real_data_te $CAM replay.repeats=6
penspin replay --trajectories $OUT/replays.npz --out-dir $OUT/real_data_te $CAM replay.repeats=1 robot.proxy.seed=7
FULL=$OUT/real_data_te/real_data_full.h5
penspin finetune --real-dataset-folder $FULL --checkpoint-path $TE --run-dir runs/ftte-45 train.max_demos=45 --num-epochs 10
penspin finetune --real-dataset-folder $FULL --checkpoint-path $TE --run-dir runs/ftte-45-sim train.max_demos=45 --num-epochs 10 train.sim_oracle=$SIM
penspin finetune --real-dataset-folder $FULL --checkpoint-path $TE --run-dir runs/ftte-45-sim-lr1e-4 train.max_demos=45 --num-epochs 10 --lr 1e-4 train.sim_oracle=$SIM
penspin finetune --real-dataset-folder $FULL --checkpoint-path $TE --run-dir runs/ftte-45-sim0.9 train.max_demos=45 --num-epochs 10 train.sim_oracle=$SIM train.sim_ratio=0.9
penspin eval --robot proxy --trajectories $OUT/replays.npz --checkpoint $TE runs/ftte-45-sim/best.pt \
  runs/ftte-45-sim-lr1e-4/best.pt runs/ftte-45-sim0.9/best.pt robot.proxy.seed=50 --out docs/results/real_proxy_tactile_ends_select_seed50.json
# None of the variants beat the student without finetuning on seed 50; the reported rows (seed 100):
penspin eval --robot proxy --trajectories $OUT/replays.npz --checkpoint $TE robot.proxy.seed=100 \
  --out docs/results/real_proxy_tactile_ends.json
penspin eval --robot proxy --trajectories $OUT/replays.npz --checkpoint runs/ftte-45/best.pt runs/ftte-45-sim/best.pt \
  robot.proxy.seed=100 --out docs/results/real_proxy_tactile_ends_finetuned.json
# The students finetuned in simulation by PPO (docs/student.md, first section), no real data:
penspin eval --robot proxy --trajectories $OUT/replays.npz --checkpoint checkpoints/student-tactile-ends-rl.pt \
  checkpoints/student-proprio-rl.pt robot.proxy.seed=100 --out docs/results/real_proxy_students_rl.json
# ... and those two finetuned on the replays (first 45 demos, with and without simulation data):
P=checkpoints/student-proprio-rl.pt
TERL=checkpoints/student-tactile-ends-rl.pt
penspin finetune --real-dataset-folder $OUT/real_data --checkpoint-path $P --run-dir runs/ftrl-p-45 train.max_demos=45 --num-epochs 10
penspin finetune --real-dataset-folder $OUT/real_data --checkpoint-path $P --run-dir runs/ftrl-p-45-sim train.max_demos=45 --num-epochs 10 train.sim_oracle=checkpoints/oracle.pt
penspin finetune --real-dataset-folder $FULL --checkpoint-path $TERL --run-dir runs/ftrl-te-45 train.max_demos=45 --num-epochs 10
penspin finetune --real-dataset-folder $FULL --checkpoint-path $TERL --run-dir runs/ftrl-te-45-sim train.max_demos=45 --num-epochs 10 train.sim_oracle=checkpoints/oracle.pt
penspin eval --robot proxy --trajectories $OUT/replays.npz --checkpoint runs/ftrl-p-45/best.pt runs/ftrl-p-45-sim/best.pt \
  runs/ftrl-te-45/best.pt runs/ftrl-te-45-sim/best.pt robot.proxy.seed=100 --out docs/results/real_proxy_students_rl_finetuned.json

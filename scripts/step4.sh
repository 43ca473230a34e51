#!/usr/bin/env bash
# Step 4 on the proxy-real hand, the commands behind docs/real.md's table (about 3 h on 2 cores;
# the PPO runs dominate). Real data: 32 excitation trials and the replays of 36 trajectories.
set -euo pipefail
P=checkpoints/student-proprio-rl.pt; D=checkpoints/student-dart.pt; TE=checkpoints/student-tactile-ends-rl.pt
T=data/replays.npz; C=docs/results/calibration.json
# Step 3: trajectories of oracle-v1.pt (the shipped oracle that replays best), hand excitation,
# calibration, replays on the collection pens.
[ -f $T ] || penspin export-replay --oracle checkpoints/oracle-v1.pt --out $T pens=all per_pen=12 steps=800
penspin excite --robot proxy --out-dir data/excite excite.trials=32
penspin calibrate --real-dataset-folder data/excite --out $C
penspin replay --trajectories $T --out-dir data/real_data2 replay.pens=collect replay.repeats=6 replay.video_fps=0
penspin calibrate --real-dataset-folder data/real_data2 --out docs/results/calibration_from_replays.json
# Step 4 by simulation: PPO from each student, in the calibrated simulator and, as the control
# with the same budget, in the training simulator. Proprio student: seeds (42, env 0), 1, 2.
for s in 0 1 2; do ts=$([ $s = 0 ] && echo 42 || echo $s)
  for arm in cal uncal; do extra=""; [ $arm = cal ] && extra="--calibration $C"
    penspin train-student-rl --student $P --oracle checkpoints/oracle-v1.pt $extra --run-dir runs/s4-$arm-s$s \
      train.max_env_steps=600000 train.progress=false train.seed=$ts env.seed=$s
  done
done
for arm in cal uncal; do extra=""; [ $arm = cal ] && extra="--calibration $C"
  penspin train-student-rl --student $D --oracle checkpoints/oracle-v1.pt $extra --run-dir runs/s4-dart-$arm-s0 \
    train.max_env_steps=600000 train.progress=false
  penspin train-student-rl --student $TE --oracle checkpoints/oracle.pt $extra --run-dir runs/s4-te-$arm-s0 \
    train.max_env_steps=300000 train.progress=false
done
# The paper's step 4 (behaviour cloning on the replays), with closed-loop selection on proxy seed 7.
for s in 0 1 2; do
  ft="--real-dataset-folder data/real_data2 --trajectories $T train.select=proxy train.select_trials=60 \
      train.epochs=15 train.select_every=3 train.update_normalizers=true train.seed=$s train.progress=false"
  penspin finetune $ft --checkpoint-path $D --run-dir runs/ft-dart-s$s
  penspin finetune $ft --checkpoint-path $D --run-dir runs/ft-dart-anchor-s$s \
    train.anchor=start train.anchor_weight=0.1 train.target_noise=0.02
  penspin finetune $ft --checkpoint-path $P --run-dir runs/ft-prl-anchor-s$s \
    train.anchor=start train.anchor_weight=0.1 train.target_noise=0.02
done
# Every row on the same 120 trials at the reporting seed 100 (three files, made as the runs ended).
seeds() { for s in 0 1 2; do echo runs/$1-s$s/$2; done; }
E="penspin eval --robot proxy --trajectories $T robot.proxy.seed=100"
$E --out docs/results/step4_eval.json --checkpoint replay checkpoints/oracle.pt $P \
  $(seeds s4-cal best.pt) $(seeds s4-uncal best.pt) $(seeds s4-cal last.pt) $(seeds s4-uncal last.pt) \
  $D runs/s4-dart-cal-s0/best.pt runs/s4-dart-uncal-s0/best.pt
$E --out docs/results/step4_eval_ft.json --checkpoint \
  $(seeds ft-prl-anchor best.pt) $(seeds ft-dart best.pt) $(seeds ft-dart-anchor best.pt)
$E --out docs/results/step4_eval_te.json --checkpoint $TE runs/s4-te-cal-s0/best.pt
$E --out docs/results/step4_eval_te_uncal.json --checkpoint runs/s4-te-uncal-s0/best.pt
$E --out docs/results/step4_eval_te_last.json --checkpoint runs/s4-te-cal-s0/last.pt runs/s4-te-uncal-s0/last.pt
python scripts/step4_table.py docs/results/step4_rows.json docs/results/step4_eval*.json

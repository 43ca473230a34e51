#!/usr/bin/env bash
# The oracle ablation study of docs/oracle.md: PenSpin's switches, 10 M env steps each from
# scratch, side by side with one physics and one learning thread each (on 2 cores a run's update
# then never leaves a core idle; docs/oracle.md has the rates). The full oracle is the committed
# v1 run (checkpoints/oracle-run, the same settings and seed); the no-point-cloud arm finished in
# an earlier session (its curve and evaluation are in docs/results). The run folders live under
# checkpoints/ablation (their logs and configs are committed, their weights and events are not).
# Run this again to resume every arm from its last.pt; a finished arm exits at once.
set -uo pipefail
RUNS=${RUNS:-checkpoints/ablation}
# PenSpin's settings, as the v1 run had them (train-oracle's defaults changed afterwards)
PENSPIN="env.obs.num_points=100 env.randomization.friction_dist=uniform train.ppo.mini_epochs=5 train.ppo.bounds_loss_coef=0"
COMMON="$PENSPIN env.num_threads=1 train.learn_threads=1 train.max_env_steps=10000000 train.progress=false"
declare -A ARM=([no-touch]="env.obs.tactile=false" [no-priv]="train.network.use_priv=false"
                [no-z-reward]="env.reward.z_dist_penalty=0")
for arm in "${!ARM[@]}"; do
  dir=$RUNS/$arm
  if [ -f "$dir/last.pt" ]; then
    penspin train-oracle --resume "$dir/last.pt" $COMMON >> "$dir.log" 2>&1 &
  else
    mkdir -p "$RUNS"
    penspin train-oracle --run-dir "$dir" ${ARM[$arm]} $COMMON >> "$dir.log" 2>&1 &
  fi
done
wait
penspin eval --checkpoint checkpoints/oracle-v1.pt $(for arm in no-touch no-priv no-z-reward; do echo $RUNS/$arm/last.pt; done) \
  --episodes 256 --out docs/results/oracle_ablation_eval.json
python scripts/compare_runs.py checkpoints/oracle-run $(for arm in no-touch no-priv no-z-reward; do echo $RUNS/$arm; done) \
  "docs/results/oracle_ablation_no-point-cloud_curves.csv#no point cloud" \
  --labels "full (v1 run)" "no touch" "no privileged state" "no z-spread reward" "no point cloud" --until 10 \
  --tags episode/length episode/rotation_speed episode/reward --window 0.25 --out docs/oracle_ablation_curves.png \
  --csv docs/results/oracle_ablation_curves.csv

#!/usr/bin/env bash
# The oracle ablation study of docs/oracle.md: the full oracle and PenSpin's four switches, 10 M env
# steps each from scratch, all five side by side with one physics and one learning thread each
# (on 2 cores a run's update then never leaves a core idle; docs/oracle.md has the rates).
# Run it again to resume every arm from its last.pt; a finished arm exits at once.
set -uo pipefail
RUNS=${RUNS:-runs/ablation}
COMMON="env.num_threads=1 train.learn_threads=1 train.max_env_steps=10000000 train.progress=false"
declare -A ARM=([full]="" [no-touch]="env.obs.tactile=false" [no-point-cloud]="env.obs.point_cloud=false"
                [no-priv]="train.network.use_priv=false" [no-z-reward]="env.reward.z_dist_penalty=0")
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
penspin eval --checkpoint $(for arm in full no-touch no-point-cloud no-priv no-z-reward; do echo $RUNS/$arm/last.pt; done) \
  --episodes 256 --out docs/results/oracle_ablation_eval.json
python docs/compare_runs.py $(for arm in full no-touch no-point-cloud no-priv no-z-reward; do echo $RUNS/$arm; done) \
  --labels full "no touch" "no point cloud" "no privileged state" "no z-spread reward" \
  --tags episode/length episode/rotation_speed episode/reward --window 0.25 --out docs/oracle_ablation_curves.png \
  --csv docs/results/oracle_ablation_curves.csv

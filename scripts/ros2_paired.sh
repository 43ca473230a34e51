#!/usr/bin/env bash
# The same trials through ROS 2 (penspin sim-hand over Fast DDS on loopback) and in-process on the
# proxy: 20 trials (2 per pen) of open-loop replay and of a proprio student, same seeds, one hand
# at a time. Writes docs/results/ros2_paired_{proxy,ros2}.json; docs/ros2.md quotes them.
set -euo pipefail
T=${T:-data/ros2_traj.npz}
S=${S:-checkpoints/student-proprio-rl.pt}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
[ -f "$T" ] || penspin export-replay --oracle checkpoints/oracle-v1.pt --out "$T" pens=all per_pen=2 steps=800
penspin sim-hand > data/ros2_sim_hand.log 2>&1 &
HAND=$!
trap 'kill -INT $HAND' EXIT
sleep 8
penspin eval --robot ros2 --trajectories "$T" --checkpoint replay "$S" \
  robot.ros2.pen_pose_topic=/penspin/pen_pose robot.ros2.place_topic=/penspin/place_pen \
  robot.ros2.start_seconds=0.2 --out docs/results/ros2_paired_ros2.json
penspin eval --robot proxy --trajectories "$T" --checkpoint replay "$S" batch=1 \
  --out docs/results/ros2_paired_proxy.json

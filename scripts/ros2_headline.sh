#!/usr/bin/env bash
# docs/real.md's replay row through ROS 2: the 120 trials of data/replays.npz (seed 100) over
# penspin sim-hand, and in-process one hand at a time (batch=1 draws the same per-trial seeds).
set -euo pipefail
T=${T:-data/replays.npz}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-43} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
penspin sim-hand proxy.seed=100 > data/ros2_headline_sim_hand.log 2>&1 &
HAND=$!
trap 'kill -INT $HAND' EXIT
sleep 8
penspin eval --robot ros2 --trajectories "$T" --checkpoint replay robot.proxy.seed=100 \
  robot.ros2.pen_pose_topic=/penspin/pen_pose robot.ros2.place_topic=/penspin/place_pen \
  robot.ros2.start_seconds=0.2 --out docs/results/ros2_headline_ros2.json
penspin eval --robot proxy --trajectories "$T" --checkpoint replay robot.proxy.seed=100 batch=1 \
  --out docs/results/ros2_headline_proxy.json

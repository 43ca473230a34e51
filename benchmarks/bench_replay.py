"""Does a replay with logging, camera and check video hold the robot's control rate?

One proxy hand (as a real hand is one) replays an oracle trajectory with every recorder on:
joint log, RGB-D frame + pen mask, point cloud and pen ends through the camera pipeline, and a
check-video frame; the work per step must stay inside the 18 Hz period (55.6 ms). Then the same
without colour (depth, mask and ends only: what a student that reads pen ends needs), and the
batched proxy's throughput (hands x steps per second) without the camera and with the ends
pipeline, which sets how long the >= 100-trial evaluations take.

    python benchmarks/bench_replay.py [--trajectories data/replays.npz] [--steps 200]
"""

from __future__ import annotations

import penspin.sim.gl  # noqa: F401  (headless GL before mujoco loads)

# isort: split
import argparse
import tempfile
import time

import numpy as np
import torch

from penspin.learning.policy import load_policy
from penspin.replay.replay import ReplayConfig, ReplaySettings, replay
from penspin.replay.trajectories import ExportConfig, Trajectories, export
from penspin.robot.camera import EndsTracker
from penspin.robot.controllers import OpenLoop
from penspin.robot.factory import RobotConfig, open_robot
from penspin.robot.trial import PoseJudge, run_trial


def trajectories(path: str, steps: int) -> Trajectories:
    if path:
        return Trajectories.load(path)
    oracle = load_policy("checkpoints/oracle.pt")
    return export(oracle, ExportConfig(pens="marker", per_pen=4, steps=steps, candidates=16,
                                       max_tries=2, min_rotation=0.0), progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trajectories", default="", help="from export-replay (default: export 4)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--hands", type=int, default=64)
    args = p.parse_args()
    torch.set_num_threads(1)
    traj = trajectories(args.trajectories, args.steps)
    one = traj.subset(np.array([0]))
    for label, colour in (("RGB-D", True), ("depth only (no colour)", False)):
        cfg = ReplayConfig(ReplaySettings(pens="all", steps=args.steps, min_rotation=0.0,
                                          video_fps=2.0 if colour else 0.0, camera=True,
                                          rgb=colour))
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = replay(one, "proxy", cfg, out, progress=False)
            wall = time.perf_counter() - start
        budget = 1e3 / summary["control_hz"]
        t = summary["timing_s"]["compute"]
        print(f"one hand, camera {label} {cfg.robot.camera_width}x{cfg.robot.camera_height} + "
              f"pen ends{' + video' if colour else ''} + log, {args.steps} steps ({wall:.1f} s "
              "with start-up and HDF5 write):")
        print(f"  work per step: median {t['median'] * 1e3:.1f} ms, p99 {t['p99'] * 1e3:.1f} ms; "
              f"budget {budget:.1f} ms at {summary['control_hz']:.0f} Hz "
              f"(p99 / budget = {t['p99'] * 1e3 / budget:.2f})")

    ids = np.arange(args.hands) % len(traj)
    part = traj.subset(ids)
    steps = min(args.steps, traj.targets.shape[1])
    robot_cfg = RobotConfig()
    for label, ends in (("no camera", False), ("pen ends from the camera", True)):
        with open_robot("proxy", robot_cfg, part.pen_name.tolist()) as robot:
            record = None
            if ends:
                tracker = EndsTracker(robot_cfg.ends, robot.num_hands)
                record = lambda r, t=tracker: {"ends": t(r)}  # noqa: E731
            start = time.perf_counter()
            run_trial(robot, OpenLoop(part.targets[:, :steps]), part.start_state(), steps,
                      PoseJudge(robot), record_fn=record)
            wall = time.perf_counter() - start
        rate = args.hands * steps / wall
        print(f"{args.hands} proxy hands side by side, {label}: {rate:,.0f} hand-steps/s "
              f"({rate / robot.control_hz:,.0f}x real time for one hand)")


if __name__ == "__main__":
    main()

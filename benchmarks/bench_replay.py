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

from penspin.replay.replay import ReplayConfig, ReplaySettings, replay
from penspin.replay.trajectories import ExportConfig, Trajectories, export
from penspin.robot.camera import EndsTracker
from penspin.robot.controllers import OpenLoop
from penspin.robot.factory import RobotConfig, open_robot
from penspin.robot.trial import PoseJudge, run_trial
from penspin.student.policy import load_policy


def trajectories(path: str, steps: int) -> Trajectories:
    if path:
        return Trajectories.load(path)
    oracle = load_policy("checkpoints/oracle.pt")
    return export(oracle, ExportConfig(pens="marker", per_pen=4, steps=steps, candidates=16,
                                       max_tries=2, min_rotation=0.0), progress=False)


def camera_frames(repeats: int = 20) -> None:
    """One 96x72 frame of a held pen: OpenGL's three passes (colour, depth, segmentation, what
    the camera used to render) beside the ray-cast depth and mask, with and without colour."""
    import mujoco

    from penspin.robot.camera import SceneCamera
    from penspin.sim import scene
    from penspin.task import grasps

    cache = grasps.load_cache("", (0.28,))
    model = scene.load_model()
    data = mujoco.MjData(model)
    lay = scene.layout(model)
    data.qpos[lay.hand_qpos] = cache["q"][0]
    data.qpos[lay.pen_qpos] = np.concatenate([cache["pen_pos"][0], cache["pen_quat"][0]])
    mujoco.mj_forward(model, data)
    camera = SceneCamera(model, width=96, height=72)
    gl = mujoco.Renderer(model, 72, 96)
    gl.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False

    def three_passes() -> None:
        gl.update_scene(data, camera.camera, camera.option)
        gl.render()
        gl.enable_depth_rendering()
        gl.render()
        gl.enable_segmentation_rendering()
        gl.render()
        gl.disable_segmentation_rendering()

    ways = {"OpenGL, 3 passes": three_passes,
            "rays + OpenGL colour": lambda: camera.render(model, data, rgb=True),
            "rays, no colour": lambda: camera.render(model, data, rgb=False)}
    times = {}
    for name, fn in ways.items():
        fn()
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        times[name] = float(np.median(runs))
    base = times["OpenGL, 3 passes"]
    for name, t in times.items():
        print(f"camera frame, {name}: median {t * 1e3:.1f} ms (speed vs GL's passes: "
              f"{base / t:.1f}x)")
    camera.close()
    gl.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trajectories", default="", help="from export-replay (default: export 4)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--hands", type=int, default=64)
    args = p.parse_args()
    torch.set_num_threads(1)
    camera_frames()
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

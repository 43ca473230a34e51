"""Does the ROS 2 path hold 18 Hz over DDS, and how late does a command show in the state?

Starts ``penspin sim-hand`` (a simulated Allegro driver) on a private ROS domain on this host, and
drives it with the ``--robot ros2`` backend (:class:`~penspin.robot.ros2.Ros2Robot`) for
``--steps`` control steps of a small open-loop wave, once per driver mode:

- period: time between the loop's control steps (median, p99), against the 55.6 ms budget;
- latency (lockstep driver, which steps once per command): command published -> the joint state
  that reflects it received, i.e. DDS both ways plus one physics step.

    python benchmarks/bench_ros2.py [--steps 360] [--modes lockstep,realtime]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import numpy as np

from penspin.robot.ros2 import Ros2Config, Ros2Robot
from penspin.sim.allegro import REAL_INIT_QPOS


class TimedRobot(Ros2Robot):
    """Records when each command goes out and each joint state comes in."""

    def __init__(self, *args, **kwargs):
        self.sent: list[float] = []
        self.received: list[float] = []
        self.tick_times: list[float] = []
        super().__init__(*args, **kwargs)

    def _command(self, targets):
        self.sent.append(time.perf_counter())
        super()._command(targets)

    def _on_state(self, msg):
        self.received.append(time.perf_counter())
        super()._on_state(msg)

    def _tick(self):
        super()._tick()
        self.tick_times.append(time.perf_counter())


def start_sim_hand(mode: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "penspin.cli", "sim-hand", f"hand.mode={mode}",
                             "hand.pen_pose_topic=", "hand.place_topic="],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    end = time.monotonic() + 120
    while not any("ready" in line for line in lines):
        if proc.poll() is not None or time.monotonic() > end:
            raise SystemExit("sim-hand did not start:\n" + "".join(lines))
        time.sleep(0.1)
    return proc, lines


def run(mode: str, steps: int) -> dict:
    proc, _ = start_sim_hand(mode)
    try:
        cfg = Ros2Config(start_seconds=1.0, node_name="bench_ros2")
        with TimedRobot(cfg, input_fn=lambda prompt: "") as robot:
            robot.start()
            first = len(robot.sent)
            t = np.arange(steps) / robot.control_hz
            wave = 0.1 * np.sin(2 * np.pi * 0.5 * t)[:, None] * np.ones(16)
            for k in range(steps):
                robot.read()
                robot.command((REAL_INIT_QPOS + wave[k])[None])
                robot.tick()
            sent = np.array(robot.sent[first:first + steps])
            received = np.array(robot.received)
            ticks = np.array(robot.tick_times[-steps:])
    finally:
        proc.terminate()
        proc.wait(10)
    period = np.diff(ticks)
    out = {"mode": mode, "steps": steps, "period_median_ms": 1e3 * np.median(period),
           "period_p99_ms": 1e3 * np.quantile(period, 0.99),
           "period_max_ms": 1e3 * period.max()}
    if mode == "lockstep":  # the first state after each command is the step it commanded
        idx = np.searchsorted(received, sent)
        ok = idx < len(received)
        lat = received[idx[ok]] - sent[ok]
        out.update(latency_median_ms=1e3 * np.median(lat), latency_p99_ms=1e3 * np.quantile(
            lat, 0.99))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=360, help="control steps per mode (18 per s)")
    ap.add_argument("--modes", default="lockstep,realtime")
    ap.add_argument("--domain", type=int, default=1 + os.getpid() % 100, help="ROS_DOMAIN_ID")
    args = ap.parse_args()
    os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rows = [run(mode, args.steps) for mode in args.modes.split(",")]
    print(f"budget {1e3 / 18:.1f} ms per step (18 Hz)\n")
    print("| driver mode | steps | period median (ms) | period p99 (ms) | period max (ms) | "
          "command -> state median (ms) | p99 (ms) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        lat = (f"{r['latency_median_ms']:.2f} | {r['latency_p99_ms']:.2f}"
               if "latency_median_ms" in r else "- | -")
        print(f"| {r['mode']} | {r['steps']} | {r['period_median_ms']:.2f} | "
              f"{r['period_p99_ms']:.2f} | {r['period_max_ms']:.2f} | {lat} |")


if __name__ == "__main__":
    main()

"""Steps 3-4 over real ROS 2 (DDS on loopback) against ``penspin sim-hand``, the simulated
Allegro driver: export -> replay -> real_data.h5 -> finetune -> eval, all through ``--robot
ros2``, and the faults: a killed driver, NaN / out-of-range / stalled states, and commands the
driver must refuse. Skipped where rclpy cannot be imported (CI installs ``penspin[ros2]``)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

try:
    import rclpy
    import rclpy.executors
except ImportError:
    rclpy = None

pytestmark = pytest.mark.skipif(
    rclpy is None, reason="rclpy is not importable: install ROS 2 Jazzy with "
    "`pip install -e '.[ros2]'` (Python 3.11) or source a ROS 2 setup")

from penspin.cli import main  # noqa: E402
from penspin.replay import dataset  # noqa: E402
from penspin.robot.joint_order import from_hardware, to_hardware  # noqa: E402
from penspin.sim.allegro import JOINT_UPPER, REAL_INIT_QPOS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ORACLE = str(ROOT / "checkpoints" / "oracle.pt")
STUDENT = str(ROOT / "checkpoints" / "student-bc.pt")
STEPS = 40
# Every sim-hand of this module, by topic prefix: (mode, fault).
HANDS = {"": ("lockstep", ""), "/kill": ("realtime", ""), "/nan": ("lockstep", "nan"),
         "/range": ("lockstep", "range"), "/stall": ("lockstep", "stall"),
         "/guard": ("realtime", "")}
TOPICS = ("cmd_joint_states", "joint_states_pub", "pen_pose", "place_pen", "pen_placed")


@pytest.fixture(scope="module", autouse=True)
def ros_env():
    """A domain of our own (no crosstalk with other runs), discovery on this host only."""
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _topics(prefix: str) -> list[str]:
    return [f"{prefix}/{t}" for t in TOPICS]


class SimHandProcess:
    def __init__(self, prefix: str, mode: str, fault: str):
        cmd, state, pose, place, placed = _topics(prefix)
        self.prefix = prefix
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "penspin.cli", "sim-hand", f"hand.command_topic={cmd}",
             f"hand.state_topic={state}", f"hand.pen_pose_topic={pose}",
             f"hand.place_topic={place}", f"hand.placed_topic={placed}",
             f"hand.status_topic={prefix}/status", f"hand.mode={mode}", f"hand.fault={fault}",
             "hand.fault_after=5", f"hand.node_name=sim_hand{prefix.replace('/', '_')}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_ready(self, timeout: float = 90.0) -> None:
        end = time.monotonic() + timeout
        while not any("sim-hand ready" in line for line in self.lines):
            assert self.proc.poll() is None, "sim-hand exited:\n" + "".join(self.lines)
            assert time.monotonic() < end, "sim-hand not ready:\n" + "".join(self.lines)
            time.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def hands(ros_env):
    started = {p: SimHandProcess(p, *spec) for p, spec in HANDS.items()}  # start side by side
    try:
        for hand in started.values():
            hand.wait_ready()
        yield started
    finally:
        for hand in started.values():
            hand.close()


def client(prefix: str = "", pose: bool = True, place: bool = True) -> list[str]:
    cmd, state, pose_t, place_t, placed = _topics(prefix)
    return [f"robot.ros2.command_topic={cmd}", f"robot.ros2.state_topic={state}",
            f"robot.ros2.pen_pose_topic={pose_t if pose else ''}",
            f"robot.ros2.place_topic={place_t if place else ''}",
            f"robot.ros2.placed_topic={placed}", "robot.ros2.start_seconds=0.2"]


REPLAY = ["replay.pens=marker", "replay.video_fps=0", "replay.min_rotation=0"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "traj.npz"
    main(["export-replay", "--oracle", ORACLE, "--out", str(out), "pens=marker", "per_pen=1",
          f"steps={STEPS}", "candidates=4", "max_tries=2", "min_rotation=0"])
    return out


@pytest.fixture(scope="module")
def ros_replayed(exported, hands, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ros2_real")
    main(["replay", "--robot", "ros2", "--trajectories", str(exported), "--out-dir", str(out),
          *REPLAY, "replay.repeats=2", *client()])
    return out


class Listener:
    """A node in its own context, spun in a thread: what goes over the wire, and when."""

    def __init__(self, name: str):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while self.ctx.ok():
            try:
                self.executor.spin_once(timeout_sec=0.02)
            except Exception:  # the context went down under us
                return

    def close(self) -> None:
        rclpy.shutdown(context=self.ctx)
        self.thread.join(2)


def _h5_layout(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()] if isinstance(v, h5py.Dataset)
                                                  else None))
    return out


def test_replay_over_dds_matches_the_in_process_proxy_and_appends(exported, ros_replayed,
                                                                  tmp_path):
    log = json.loads((ros_replayed / "replay_log.json").read_text())
    assert log["robot"] == "ros2" and log["trials"] == 2 and log["demos_in_file"] == 2
    assert all("rotation_rad" in r for r in log["records"])  # judged from the pen pose topic
    # 18 Hz over DDS: the period holds the budget.
    assert log["timing_s"]["period"]["median"] == pytest.approx(1 / 18, rel=0.05)
    # The same trials in-process (one hand at a time, same seeds) give the same results...
    proxy = tmp_path / "proxy"
    main(["replay", "--trajectories", str(exported), "--out-dir", str(proxy), *REPLAY,
          "replay.repeats=2", "replay.batch=1"])
    plog = json.loads((proxy / "replay_log.json").read_text())
    # (The ros2 judge works from the pose messages that have arrived by each tick, the proxy
    # from its own state: up to 1e-4 rad apart over 120 trials here, more on a busy machine; far
    # inside the trial-to-trial noise of tenths.)
    for a, b in zip(log["records"], plog["records"], strict=True):
        assert a["rotation_rad"] == pytest.approx(b["rotation_rad"], abs=0.01)
        assert a["dropped"] == b["dropped"] and a["kept_steps"] == b["kept_steps"]
    # ... and the same file, in the original's layout (the proxy adds touch, a real hand not).
    ros, sim = _h5_layout(ros_replayed / dataset.FILE_NAME), _h5_layout(proxy / dataset.FILE_NAME)
    assert set(ros) == {k for k in sim if "touch" not in k}
    assert {"replay_demon_0/qpos", "replay_demon_0/action", "replay_demon_0/finger_tip_pose",
            "replay_demon_0/current_target_qpos"} <= set(ros)
    for k, v in ros.items():
        if v is not None:
            np.testing.assert_allclose(v, sim[k], atol=1e-6, err_msg=k)
    demos = dataset.load_demos(ros_replayed)
    assert len(demos) == 2 and demos[0].length == STEPS
    # A second replay into the same folder appends and numbers its trials on.
    again = tmp_path / "again"
    again.mkdir()
    for p in ros_replayed.iterdir():
        (again / p.name).write_bytes(p.read_bytes())
    main(["replay", "--robot", "ros2", "--trajectories", str(exported), "--out-dir", str(again),
          *REPLAY, *client()])
    second = json.loads((again / "replay_log_1.json").read_text())
    assert [r["trial"] for r in second["records"]] == [2]
    assert second["demos_in_file"] == 3 == len(dataset.load_demos(again))


def test_finetune_then_eval_a_student_over_dds(exported, ros_replayed, tmp_path):
    run = tmp_path / "finetune"
    main(["finetune", "--real-dataset-folder", str(ros_replayed), "--checkpoint-path", STUDENT,
          "--run-dir", str(run), "--num-epochs", "1", "train.progress=false"])
    best = str(run / "best.pt")
    out = tmp_path / "eval.json"
    main(["eval", "--robot", "ros2", "--trajectories", str(exported), "--checkpoint", "replay",
          best, "--out", str(out), *client()])
    rows = json.loads(out.read_text())["results"]
    assert [r["policy"] for r in rows] == ["replay", best]
    proxy = tmp_path / "proxy.json"
    main(["eval", "--robot", "proxy", "--trajectories", str(exported), "--checkpoint", "replay",
          best, "--out", str(proxy), "batch=1"])
    for a, b in zip(rows, json.loads(proxy.read_text())["results"], strict=True):
        assert a["trials"] == 1
        # A state that reaches the client after its tick makes the student act on the previous
        # reading, as on a real hand (seen on a busy machine, and on 1 of 20 paired trials in
        # docs/ros2.md: 0.03 rad): far inside the trial-to-trial noise of tenths of a radian.
        assert a["rotation_rad"]["mean"] == pytest.approx(b["rotation_rad"]["mean"], abs=0.05)
        assert a["survival"]["mean"] == b["survival"]["mean"]


def test_replay_stops_running_trials_at_max_demos(exported, hands, tmp_path):
    out = tmp_path / "two"
    main(["replay", "--robot", "ros2", "--trajectories", str(exported), "--out-dir", str(out),
          *REPLAY, "replay.repeats=4", "replay.max_demos=1", *client()])
    log = json.loads((out / "replay_log.json").read_text())
    assert log["trials"] == 1 and log["demos_in_file"] == 1


def test_without_a_pose_topic_the_person_judges_and_closed_stdin_is_clear(
        exported, hands, tmp_path, monkeypatch, capsys):
    args = ["replay", "--robot", "ros2", "--trajectories", str(exported), *REPLAY,
            *client(pose=False, place=False)]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # closed before "place the pen"
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out-dir", str(tmp_path / "a")])
    assert exc.value.code == 2 and "standard input closed" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))  # placed; closed at the yes/no
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out-dir", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "standard input closed" in err and "trial 0" in err
    assert "Traceback" not in err


def test_driver_killed_mid_trial_stops_the_client_fast_and_keeps_earlier_demos(
        exported, hands, tmp_path, capsys):
    hand = hands["/kill"]
    listen = Listener("kill_listener")
    sent: list[float] = []
    placed: list[float] = []
    try:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String

        from penspin.robot.ros2 import latched_qos

        listen.node.create_subscription(JointState, "/kill/cmd_joint_states",
                                        lambda m: sent.append(time.monotonic()), 10)
        listen.node.create_subscription(String, "/kill/pen_placed",
                                        lambda m: placed.append(time.monotonic()),
                                        latched_qos(rclpy))
        killed: list[float] = []

        def killer():  # kill the driver 0.5 s into the second trial
            while len(placed) < 2 and hand.proc.poll() is None:
                time.sleep(0.01)
            time.sleep(0.5)
            hand.proc.kill()
            killed.append(time.monotonic())

        threading.Thread(target=killer, daemon=True).start()
        out = tmp_path / "killed"
        with pytest.raises(SystemExit) as exc:
            main(["replay", "--robot", "ros2", "--trajectories", str(exported), "--out-dir",
                  str(out), *REPLAY, "replay.repeats=3", *client("/kill")])
        time.sleep(0.3)  # anything still in flight arrives
    finally:
        listen.close()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "stopped publishing" in err
    assert killed, "the driver was never killed"
    gap = sent[-1] - killed[0]
    print(f"last command {gap:.3f} s after the driver was killed")
    assert gap < 0.5, f"the client kept commanding a dead driver for {gap:.2f} s"
    assert len(dataset.load_demos(out)) == 1  # the first trial's demo is intact


@pytest.mark.parametrize("prefix,message", [("/nan", "not finite"), ("/range", "out of range"),
                                            ("/stall", "stopped publishing")])
def test_bad_joint_states_abort_the_trial(exported, hands, tmp_path, capsys, prefix, message):
    out = tmp_path / "bad"
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--robot", "ros2", "--trajectories", str(exported), "--out-dir",
              str(out), *REPLAY, *client(prefix)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err, err
    assert dataset.demo_count(out / dataset.FILE_NAME) == 0


def test_the_driver_rejects_commands_outside_the_limits_or_past_the_step_bound(hands):
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    listen = Listener("guard_tester")
    status: list[dict] = []
    states: list[np.ndarray] = []
    try:
        pub = listen.node.create_publisher(JointState, "/guard/cmd_joint_states", 10)
        listen.node.create_subscription(String, "/guard/status",
                                        lambda m: status.append(json.loads(m.data)), 10)
        listen.node.create_subscription(
            JointState, "/guard/joint_states_pub",
            lambda m: states.append(from_hardware(np.array(m.position))), 10)
        end = time.monotonic() + 10
        while pub.get_subscription_count() == 0 or not states:
            assert time.monotonic() < end, "no sim-hand on /guard"
            time.sleep(0.05)

        def send(q_penspin, raw=None):
            msg = JointState()
            msg.position = raw if raw is not None else to_hardware(q_penspin).tolist()
            pub.publish(msg)
            time.sleep(0.1)

        send(REAL_INIT_QPOS)  # where the parked hand holds: accepted
        far = REAL_INIT_QPOS.copy()
        far[3] = JOINT_UPPER[3] + 0.5
        send(far)  # outside the limits
        jump = REAL_INIT_QPOS.copy()
        jump[1] = min(jump[1] + 1.0, JOINT_UPPER[1])
        send(jump)  # inside the limits, but a 1 rad step
        send(None, raw=[float("nan")] * 16)
        send(None, raw=[0.0] * 15)
        end = time.monotonic() + 5
        while not status or status[-1]["rejected"] < 4:
            assert time.monotonic() < end, f"rejections not reported: {status}"
            time.sleep(0.05)
        last = status[-1]
        assert last["rejected"] == 4 and last["accepted"] == 1
        time.sleep(0.3)
        # The hand never went after the rejected targets.
        q = states[-1]
        assert abs(q[1] - REAL_INIT_QPOS[1]) < 0.2 and abs(q[3] - REAL_INIT_QPOS[3]) < 0.2
    finally:
        listen.close()

"""Replay data files: round trips, the original's layout, clear errors, and crash safety."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
import torch

from penspin.replay.dataset import DatasetError, append_demo, demo_count, load_demos
from penspin.robot.joint_order import tips_to_hardware, to_hardware
from penspin.task.kinematics import FingertipFK


def _demo(length: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    qpos = rng.uniform(-0.3, 0.3, (length, 16)).astype(np.float32)
    target = (qpos + rng.uniform(-0.05, 0.05, (length, 16))).astype(np.float32)
    tips = rng.uniform(-0.1, 0.1, (length, 12)).astype(np.float32)
    return qpos, target, tips


def _extras(length: int):
    rng = np.random.default_rng(1)
    return {
        "rgb_ori": rng.integers(0, 255, (length, 6, 8, 3), dtype=np.uint8),
        "rgb_c2d": rng.integers(0, 255, (length, 6, 8, 3), dtype=np.uint8),
        "depth": rng.uniform(0, 1, (length, 6, 8)).astype(np.float32),
        "pc": rng.uniform(-1, 1, (length, 20, 3)).astype(np.float32),
        "obj_ends": rng.uniform(-1, 1, (length, 2, 3)).astype(np.float32),
    }


def _write_raw(path, groups: dict, attrs: dict | None = None):
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs or {})
        for name, data in groups.items():
            for key, value in data.items():
                f[f"{name}/{key}"] = value


def test_round_trip_penspin_order_in_hardware_order_on_disk(tmp_path):
    path = tmp_path / "real_data.h5"
    written = [_demo(n, seed=n) for n in (5, 3, 7)]
    assert demo_count(path) == 0
    names = [append_demo(path, *d) for d in written]
    assert names == ["replay_demon_0", "replay_demon_1", "replay_demon_2"]
    assert demo_count(path) == 3

    demos = load_demos(tmp_path)  # a folder means its real_data.h5
    assert [d.name for d in demos] == names
    for demo, (qpos, target, tips) in zip(demos, written, strict=True):
        assert demo.length == len(qpos)
        np.testing.assert_array_equal(demo.qpos, qpos)
        np.testing.assert_array_equal(demo.target, target)
        np.testing.assert_array_equal(demo.action, target - qpos)
        np.testing.assert_array_equal(demo.finger_tip_pose, tips)
        assert demo.extras == {}

    with h5py.File(path, "r") as f:
        assert f.attrs["joint_order"] == "hardware" and f.attrs["writer"] == "penspin"
        np.testing.assert_array_equal(f["replay_demon_0/qpos"][0], to_hardware(written[0][0][0]))
        np.testing.assert_array_equal(f["replay_demon_0/finger_tip_pose"][0],
                                      tips_to_hardware(written[0][2][0]))
        assert set(f["replay_demon_1"]) == {"qpos", "current_target_qpos", "action",
                                            "finger_tip_pose"}


def test_trajectory_id_and_start_target_are_group_attributes_in_file_order(tmp_path):
    path = tmp_path / "real_data.h5"
    qpos, target, tips = _demo(4)
    start = (target[0] - 0.02).astype(np.float32)
    append_demo(path, qpos, target, tips, trajectory_id=7, start_target=start)
    append_demo(path, qpos, target, tips)  # a writer that knew neither (older files)
    tagged, bare = load_demos(path)
    assert tagged.trajectory_id == 7
    np.testing.assert_array_equal(tagged.start_target, start)
    assert bare.trajectory_id is None and bare.start_target is None
    with h5py.File(path, "r") as f:  # datasets untouched: the original's readers still work
        assert set(f["replay_demon_0"]) == {"qpos", "current_target_qpos", "action",
                                            "finger_tip_pose"}
        np.testing.assert_array_equal(f["replay_demon_0"].attrs["start_target"],
                                      to_hardware(start))
    with pytest.raises(DatasetError, match="start_target.*shape"):
        append_demo(path, qpos, target, tips, start_target=start[:15])


def test_explicit_index_and_existing_name_refused(tmp_path):
    path = tmp_path / "real_data.h5"
    assert append_demo(path, *_demo(2), index=7) == "replay_demon_7"
    assert append_demo(path, *_demo(2)) == "replay_demon_8"
    with pytest.raises(DatasetError, match="replay_demon_7.*exists"):
        append_demo(path, *_demo(2), index=7)
    assert [d.name for d in load_demos(path)] == ["replay_demon_7", "replay_demon_8"]


def test_full_extras_round_trip(tmp_path):
    path = tmp_path / "real_data_full.h5"
    qpos, target, tips = _demo(4)
    extras = _extras(4)
    append_demo(path, qpos, target, tips, extras=extras)
    (demo,) = load_demos(tmp_path)  # only the full file exists: the folder falls back to it
    assert demo.extras.keys() == extras.keys()
    for key, value in extras.items():
        assert demo.extras[key].dtype == value.dtype
        np.testing.assert_array_equal(demo.extras[key], value)
    with h5py.File(path, "r") as f:
        assert f["replay_demon_0/rgb_ori"].compression == "gzip"


def test_original_layout_reads_with_fk_fingertips(tmp_path):
    qpos, target, _ = _demo(6)
    obj_ends = np.arange(6 * 6, dtype=np.float64).reshape(6, 6)
    groups = {
        "replay_demon_10": {"qpos": to_hardware(qpos).astype(np.float64),
                            "current_target": to_hardware(target).astype(np.float64)},
        "replay_demon_2": {"qpos": to_hardware(qpos[:3]),
                           "current_target": to_hardware(target[:3]),
                           "action": to_hardware(target[:3] - qpos[:3]),
                           "obj_ends": obj_ends[:3]},
    }
    _write_raw(tmp_path / "real_data.h5", groups)
    demos = load_demos(tmp_path / "real_data.h5")
    assert [d.name for d in demos] == ["replay_demon_2", "replay_demon_10"]  # integer order
    demo = demos[1]
    np.testing.assert_allclose(demo.qpos, qpos)
    np.testing.assert_allclose(demo.target, target)
    np.testing.assert_allclose(demo.action, target - qpos)
    with torch.no_grad():
        fk = FingertipFK()(torch.as_tensor(qpos, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(demo.finger_tip_pose, fk, atol=1e-6)
    np.testing.assert_array_equal(demos[0].extras["obj_ends"], obj_ends[:3].reshape(3, 2, 3))


def test_penspin_order_attribute_is_honoured(tmp_path):
    qpos, target, tips = _demo(3)
    group = {"qpos": qpos, "current_target_qpos": target, "finger_tip_pose": tips}
    _write_raw(tmp_path / "d.h5", {"replay_demon_0": group}, {"joint_order": "penspin"})
    (demo,) = load_demos(tmp_path / "d.h5")
    np.testing.assert_array_equal(demo.qpos, qpos)
    np.testing.assert_array_equal(demo.finger_tip_pose, tips)


def _good_group(length: int = 4) -> dict:
    qpos, target, tips = _demo(length)
    return {"qpos": qpos, "current_target_qpos": target, "finger_tip_pose": tips}


@pytest.mark.parametrize(("change", "pattern"), [
    ({"qpos": None}, r"replay_demon_0.*'qpos'.*missing"),
    ({"current_target_qpos": None},
     r"replay_demon_0.*'current_target_qpos'.*missing.*'current_target'"),
    ({"qpos": np.zeros((4, 15))}, r"replay_demon_0.*'qpos'.*expected shape \[T, 16\]"),
    ({"finger_tip_pose": np.full((4, 12), np.nan)}, r"'finger_tip_pose'.*non-finite"),
    ({"current_target_qpos": np.zeros((5, 16))}, r"'current_target_qpos'.*5 steps.*qpos has 4"),
    ({"rgb_ori": np.zeros((4, 2, 2, 3), np.float32)}, r"'rgb_ori'.*uint8"),
])
def test_malformed_group(tmp_path, change, pattern):
    group = {k: v for k, v in {**_good_group(), **change}.items() if v is not None}
    path = tmp_path / "bad.h5"
    _write_raw(path, {"replay_demon_0": group})
    with pytest.raises(DatasetError, match=pattern) as info:
        load_demos(path)
    assert str(path) in str(info.value)


def test_malformed_files(tmp_path):
    with pytest.raises(DatasetError, match="no such file.*real_data_full.h5"):
        load_demos(tmp_path)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DatasetError, match="text.h5: not a readable HDF5"):
        load_demos(tmp_path / "text.h5")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        append_demo(tmp_path / "text.h5", *_demo(2))
    _write_raw(tmp_path / "empty.h5", {"other_group": {"x": np.zeros(3)}})
    with pytest.raises(DatasetError, match="empty.h5: no replay_demon_"):
        load_demos(tmp_path / "empty.h5")
    _write_raw(tmp_path / "order.h5", {"replay_demon_0": _good_group()}, {"joint_order": "abc"})
    with pytest.raises(DatasetError, match="joint_order='abc'"):
        load_demos(tmp_path / "order.h5")


def test_append_validates_before_writing(tmp_path):
    path = tmp_path / "real_data.h5"
    qpos, target, tips = _demo(4)
    bad_target = target.copy()
    bad_target[2, 3] = np.inf
    with pytest.raises(DatasetError, match="replay_demon_0.*'current_target_qpos'.*non-finite"):
        append_demo(path, qpos, bad_target, tips)
    with pytest.raises(DatasetError, match="'finger_tip_pose'.*expected shape"):
        append_demo(path, qpos, target, tips[:, :9])
    with pytest.raises(DatasetError, match="'pc'.*3 steps but qpos has 4"):
        append_demo(path, qpos, target, tips, extras={"pc": np.zeros((3, 5, 3))})
    with pytest.raises(DatasetError, match="'action'.*reserved"):
        append_demo(path, qpos, target, tips, extras={"action": qpos})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def _fail_on(monkeypatch, target, attr, call_number):
    """Make ``target.attr`` raise on its ``call_number``-th call."""
    original, calls = getattr(target, attr), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == call_number:
            raise OSError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, attr, failing)


@pytest.mark.parametrize(("target", "attr", "call_number"), [
    (h5py.Group, "create_dataset", 2),  # the temp file holds a half-written group
    (os, "replace", 1),  # the temp file is complete but never moved into place
])
def test_crash_inside_append_keeps_earlier_demos(tmp_path, monkeypatch, target, attr, call_number):
    path = tmp_path / "real_data.h5"
    first = _demo(3)
    append_demo(path, *first)
    before = path.read_bytes()
    _fail_on(monkeypatch, target, attr, call_number)
    with pytest.raises(OSError, match="simulated crash"):
        append_demo(path, *_demo(5, seed=1))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["real_data.h5"]
    (demo,) = load_demos(path)
    np.testing.assert_array_equal(demo.qpos, first[0])


def test_sigkill_during_appends_leaves_readable_file(tmp_path):
    path = tmp_path / "real_data.h5"
    script = textwrap.dedent(f"""
        import numpy as np
        from penspin.replay.dataset import append_demo
        rng = np.random.default_rng(0)
        while True:
            q = rng.uniform(-0.3, 0.3, (50, 16))
            pc = rng.uniform(-1, 1, (50, 2000, 3))
            append_demo({str(path)!r}, q, q + 0.01, np.zeros((50, 12)), extras={{"pc": pc}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while demo_count(path) < 3:
            assert proc.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    demos = load_demos(path)
    assert len(demos) >= 3
    assert [d.name for d in demos] == [f"replay_demon_{i}" for i in range(len(demos))]
    for demo in demos:
        assert demo.length == 50 and demo.extras["pc"].shape == (50, 2000, 3)
        np.testing.assert_allclose(demo.action, 0.01, atol=1e-6)

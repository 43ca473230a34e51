"""Step 4: replay windows in the student's own inputs and units, the split, and finetuning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from penspin.config import ConfigError
from penspin.finetune.run import (
    FinetuneConfig,
    Finetuner,
    demo_trajectories,
    load_start,
    score_trials,
)
from penspin.finetune.windows import build_windows, demo_weights, split, trajectory_groups
from penspin.replay.dataset import TOUCH_KEY, Demo, append_demo, load_demos
from penspin.rl.checkpoint import load_checkpoint
from penspin.robot.controllers import PolicyController
from penspin.sim.allegro import JOINT_LOWER, JOINT_UPPER
from penspin.student.export import export_student
from penspin.student.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "checkpoints" / "student-bc.pt"
SCALE = 1.0 / 24.0
H = 30
MID = ((JOINT_LOWER + JOINT_UPPER) / 2).astype(np.float32)


def _stepped_demo(length: int, seed: int, name: str = "d", ends: bool = False,
                  touch: bool = False) -> Demo:
    """Targets moving by integer multiples in [-2, 2] of SCALE; q lags one step behind."""
    rng = np.random.default_rng(seed)
    mult = rng.integers(-2, 3, (length, 16)).astype(np.float64)
    mult[0] = 0
    target = MID + np.cumsum(mult, 0) * SCALE
    qpos = np.concatenate([target[:1], target[:-1]]) + rng.normal(0, 0.01, (length, 16))
    extras = {}
    if ends:
        extras["obj_ends"] = rng.uniform(-0.1, 0.1, (length, 2, 3)).astype(np.float32)
    if touch:
        extras[TOUCH_KEY] = (rng.random((length, 32)) < 0.3).astype(np.float32)
    return Demo(name, qpos.astype(np.float32), target.astype(np.float32),
                (target - qpos).astype(np.float32), np.zeros((length, 12), np.float32), extras)


def _smooth_demo(length: int, seed: int) -> Demo:
    """A learnable motion: targets on a sine per joint, q tracking them one step late."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[:, None]
    phase = rng.uniform(0, 2 * np.pi, 16)
    target = MID + 0.3 * np.sin(2 * np.pi * t / 40 + phase)
    qpos = np.concatenate([target[:1], target[:-1]]) + rng.normal(0, 0.005, (length, 16))
    return Demo(f"replay_demon_{seed}", qpos.astype(np.float32), target.astype(np.float32),
                (target - qpos).astype(np.float32), np.zeros((length, 12), np.float32))


# Windows ----------------------------------------------------------------------------------------
def _entry(demo: Demo, t: int) -> np.ndarray:
    """The task's history entry of step t: (measured q_t, the target that produced it)."""
    return np.concatenate([demo.qpos[t], demo.target[t - 1]])


# Full windows only (pad_start=False, the original's choice).
def test_window_labels_are_target_steps_in_action_units_clamped():
    demo = _stepped_demo(45, seed=0)
    w = build_windows([demo], SCALE, H, pad_start=False)
    assert len(w) == 45 - H
    target = demo.target.astype(np.float64)
    for i in range(len(w)):
        t = H + i  # the window ending at step t
        want = np.clip((target[t] - target[t - 1]) / SCALE, -1, 1)
        np.testing.assert_allclose(w.labels[i].numpy(), want, atol=1e-4)
    # The data holds steps of 2 * SCALE, so clamping really happens and labels stay in [-1, 1].
    raw = (target[H:] - target[H - 1:-1]) / SCALE
    assert np.abs(raw).max() > 1.5
    assert w.labels.abs().max().item() == pytest.approx(1.0)
    assert set(np.round(w.labels.numpy().ravel(), 3)) <= {-1.0, 0.0, 1.0}


def test_window_history_rows_are_measured_q_and_the_target_that_produced_it():
    demo = _stepped_demo(40, seed=1, ends=True)
    w = build_windows([demo], SCALE, H, pad_start=False)
    inputs, labels = w.batch(torch.arange(len(w)))
    assert inputs["proprio_hist"].shape == (40 - H, H, 32)
    assert inputs["obs"].shape == (40 - H, 96)
    for i in range(len(w)):
        t = H + i
        hist = inputs["proprio_hist"][i].numpy()
        np.testing.assert_array_equal(hist[-1], _entry(demo, t))
        np.testing.assert_array_equal(hist[0], _entry(demo, t - H + 1))
        np.testing.assert_array_equal(hist, np.stack([_entry(demo, s)
                                                      for s in range(t - H + 1, t + 1)]))
        np.testing.assert_array_equal(inputs["obs"][i].numpy(), hist[-3:].reshape(-1))
        np.testing.assert_array_equal(inputs["obj_ends"][i].numpy(),
                                      demo.extras["obj_ends"][t - 2:t + 1].reshape(3, 6))
    # The label is the step taken *after* the newest entry, not one inside the window.
    np.testing.assert_allclose(
        labels[0].numpy(), np.clip((demo.target[H] - demo.target[H - 1]) / SCALE, -1, 1),
        atol=1e-4)


def test_short_demos_are_skipped_and_all_short_is_an_error():
    demos = [_stepped_demo(20, 0, "a"), _stepped_demo(31, 1, "b"), _stepped_demo(45, 2, "c")]
    w = build_windows(demos, SCALE, H, pad_start=False)
    assert len(w) == 0 + 1 + 15
    assert w.demo.tolist() == [1] + [2] * 15
    # The one window of the 31-step demo ends at its last step.
    inputs, _ = w.batch(torch.tensor([0]))
    np.testing.assert_array_equal(inputs["proprio_hist"][0, -1].numpy(), _entry(demos[1], 30))
    inputs, _ = w.batch(torch.tensor([1]))
    np.testing.assert_array_equal(inputs["proprio_hist"][0, -1].numpy(), _entry(demos[2], 30))
    # Full windows never reach back before their demo's first entry.
    inputs, _ = w.batch(torch.arange(len(w)))
    np.testing.assert_array_equal(inputs["proprio_hist"][1].numpy(),
                                  np.stack([_entry(demos[2], s) for s in range(1, 31)]))
    assert w.ends is None and w.touch is None  # no demo has obj_ends or touch
    with pytest.raises(ConfigError, match="longer than 31"):
        build_windows([_stepped_demo(30, 0), _stepped_demo(5, 1)], SCALE, H, pad_start=False)


# Padded windows (the default): one ending at every step t >= 1 (no start target).
def test_padded_windows_end_at_every_step_and_repeat_the_first_entry():
    demo = _stepped_demo(45, seed=3, ends=True, touch=True)
    w = build_windows([demo], SCALE, H)
    assert len(w) == 45 - 1
    inputs, labels = w.batch(torch.arange(len(w)))
    assert inputs["proprio_hist"].shape == (44, H, 32) and inputs["obs"].shape == (44, 96)
    first = _entry(demo, 1)  # (qpos_1, target_0)
    np.testing.assert_array_equal(first, np.concatenate([demo.qpos[1], demo.target[0]]))
    # The window ending at step 1: every slot is the first entry, as after a reset.
    np.testing.assert_array_equal(inputs["proprio_hist"][0].numpy(), np.tile(first, (H, 1)))
    # The window ending at step 5: 26 copies of the first entry, then steps 2..5.
    hist = inputs["proprio_hist"][4].numpy()
    np.testing.assert_array_equal(hist[:26], np.tile(first, (26, 1)))
    np.testing.assert_array_equal(hist[26:], np.stack([_entry(demo, s) for s in range(2, 6)]))
    # Every window ending at t: slot j holds step max(1, t - 29 + j).
    target = demo.target.astype(np.float64)
    ends = demo.extras["obj_ends"].reshape(45, 6)
    for i in range(len(w)):
        t = i + 1
        steps = [max(1, s) for s in range(t - H + 1, t + 1)]
        np.testing.assert_array_equal(inputs["proprio_hist"][i].numpy(),
                                      np.stack([_entry(demo, s) for s in steps]))
        np.testing.assert_array_equal(inputs["obs"][i].numpy(),
                                      inputs["proprio_hist"][i, -3:].reshape(-1).numpy())
        # Touch is read with q_t, so its history rows are the proprio rows' steps.
        np.testing.assert_array_equal(inputs["tactile_hist"][i].numpy(),
                                      demo.extras[TOUCH_KEY][steps])
        # Pen ends are padded the same way: rows before step 1 repeat step 1's.
        np.testing.assert_array_equal(inputs["obj_ends"][i].numpy(),
                                      ends[[max(1, s) for s in range(t - 2, t + 1)]])
        want = np.clip((target[t] - target[t - 1]) / SCALE, -1, 1)
        np.testing.assert_allclose(labels[i].numpy(), want, atol=1e-4)
    np.testing.assert_array_equal(inputs["obj_ends"][0].numpy(), np.tile(ends[1], (3, 1)))
    np.testing.assert_array_equal(inputs["obj_ends"][1].numpy(), ends[[1, 1, 2]])
    raw = (target[1:] - target[:-1]) / SCALE
    assert np.abs(raw).max() > 1.5 and w.labels.abs().max().item() == pytest.approx(1.0)
    # From step 30 on the padded windows are exactly the full ones.
    full = build_windows([demo], SCALE, H, pad_start=False)
    full_inputs, full_labels = full.batch(torch.arange(len(full)))
    for key in ("proprio_hist", "obs", "obj_ends", "tactile_hist"):
        torch.testing.assert_close(inputs[key][H - 1:], full_inputs[key], rtol=0, atol=0)
    torch.testing.assert_close(labels[H - 1:], full_labels, rtol=0, atol=0)


def test_padded_windows_stay_inside_their_demo():
    demos = [_stepped_demo(1, 0, "a"), _stepped_demo(2, 1, "b"), _stepped_demo(6, 2, "c"),
             _stepped_demo(35, 3, "d")]
    w = build_windows(demos, SCALE, H)
    assert len(w) == 0 + 1 + 5 + 34  # a 1-step demo has no step to label
    assert w.demo.tolist() == [1] + [2] * 5 + [3] * 34
    inputs, _ = w.batch(torch.arange(len(w)))
    # The 2-step demo's one window is its first entry throughout.
    np.testing.assert_array_equal(inputs["proprio_hist"][0].numpy(),
                                  np.tile(_entry(demos[1], 1), (H, 1)))
    # The first window of the later demos repeats their own first entry, not the previous demo's.
    np.testing.assert_array_equal(inputs["proprio_hist"][1].numpy(),
                                  np.tile(_entry(demos[2], 1), (H, 1)))
    hist = inputs["proprio_hist"][1 + 4].numpy()  # demo c, step 5
    np.testing.assert_array_equal(hist[:26], np.tile(_entry(demos[2], 1), (26, 1)))
    np.testing.assert_array_equal(hist[26:], np.stack([_entry(demos[2], s) for s in range(2, 6)]))
    np.testing.assert_array_equal(inputs["proprio_hist"][6].numpy(),
                                  np.tile(_entry(demos[3], 1), (H, 1)))
    np.testing.assert_array_equal(inputs["proprio_hist"][-1, -1].numpy(), _entry(demos[3], 34))
    assert w.ends is None
    with pytest.raises(ConfigError, match="longer than 2"):
        build_windows([_stepped_demo(1, 0), _stepped_demo(1, 1)], SCALE, H)


def test_split_holds_out_whole_demos():
    demos = [_stepped_demo(35 + 3 * k, k, f"d{k}") for k in range(6)]
    w = build_windows(demos, SCALE, H)
    train, val = split(w, 0.34, seed=0)
    train_demos, val_demos = set(w.demo[train].tolist()), set(w.demo[val].tolist())
    assert train_demos.isdisjoint(val_demos)
    assert train_demos | val_demos == set(range(6))
    assert len(val_demos) == 2  # round(0.34 * 6)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(len(w)))
    again = split(w, 0.34, seed=0)
    assert torch.equal(again[0], train) and torch.equal(again[1], val)
    # A tiny ratio still holds out one demo; no ratio holds out none.
    assert len(set(w.demo[split(w, 0.01, seed=3)[1]].tolist())) == 1
    tr, va = split(w, 0.0, seed=0)
    assert len(va) == 0 and len(tr) == len(w)


def _repeat(demo: Demo, seed: int, trajectory_id: int | None = None) -> Demo:
    """Another replay of the same trajectory: the same targets, other readings."""
    rng = np.random.default_rng(100 + seed)
    qpos = demo.qpos + rng.normal(0, 0.01, demo.qpos.shape).astype(np.float32)
    return Demo(f"{demo.name}-r{seed}", qpos, demo.target, demo.target - qpos,
                demo.finger_tip_pose, trajectory_id=trajectory_id)


def test_repeats_of_one_trajectory_never_straddle_the_split():
    bases = [_stepped_demo(40 + k, k, f"t{k}") for k in range(4)]
    demos = [_repeat(b, r) for b in bases for r in range(3)]  # older files: no trajectory ids
    assert trajectory_groups(demos) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    w = build_windows(demos, SCALE, H)
    for seed in range(5):
        train, val = split(w, 0.25, seed)
        assert set(w.group[train].tolist()).isdisjoint(w.group[val].tolist())
        assert len(set(w.group[val].tolist())) == 1
    # With trajectory ids, the ids decide, whatever the targets.
    tagged = [_repeat(bases[0], 0, 5), _repeat(bases[1], 1, 5), _repeat(bases[2], 2, 6)]
    assert trajectory_groups(tagged) == [0, 0, 1]
    # Each trajectory weighs as one demo: three repeats a third each.
    weights = demo_weights(w)
    assert torch.allclose(weights, torch.full((len(w),), 1 / 3))


def test_start_windows_are_what_the_controller_feeds(tmp_path):
    demo = _stepped_demo(12, 0)
    start = demo.target[0] - 2 * SCALE  # the hand held this before step 0
    append_demo(tmp_path / "d.h5", demo.qpos, demo.target, demo.finger_tip_pose,
                trajectory_id=3, start_target=start)
    (saved,) = load_demos(tmp_path / "d.h5")
    assert saved.trajectory_id == 3
    np.testing.assert_allclose(saved.start_target, start)
    w = build_windows([saved], SCALE, H)
    assert len(w) == 12  # a window ends at every step from 0
    fed = []

    def act(inputs):
        fed.append(inputs["proprio_hist"][0].numpy().copy())
        return torch.zeros(1, 16)

    ctrl = PolicyController(act, SCALE, history_len=H)
    ctrl.start(saved.qpos[:1].astype(np.float64), start[None].astype(np.float64), None)
    held = start
    for t in range(3):  # the controller as run_trial drives it, along the demo's own targets
        ctrl(t, saved.qpos[t:t + 1].astype(np.float64), held[None].astype(np.float64), None)
        held = saved.target[t]
    inputs, labels = w.batch(torch.arange(3))
    for t in range(3):
        np.testing.assert_allclose(inputs["proprio_hist"][t].numpy(), fed[t], atol=1e-6)
    np.testing.assert_allclose(labels[0].numpy(), np.clip(
        (saved.target[0] - start) / SCALE, -1, 1), atol=1e-5)


def test_target_noise_relabels_towards_the_demos_absolute_target(tmp_path):
    demos = [_stepped_demo(40, k) for k in range(2)]  # steps of up to 2 * SCALE: labels clamp
    cfg = _cfg(epochs=1, val_ratio=0.0, target_noise=SCALE)
    model, task, _ = load_start(str(STUDENT), cfg)
    tuner = Finetuner(model, task, cfg, demos, tmp_path, str(STUDENT))
    idx = torch.arange(len(tuner.windows))
    inputs, labels = tuner.windows.batch(idx)
    torch.manual_seed(0)
    noisy, relabelled = tuner._perturb(inputs, idx)
    shift = noisy["proprio_hist"][..., 16:] - inputs["proprio_hist"][..., 16:]
    assert shift.abs().max() > 0 and torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6)
    assert torch.equal(noisy["proprio_hist"][..., :16], inputs["proprio_hist"][..., :16])
    assert torch.equal(noisy["obs"], noisy["proprio_hist"][:, -3:].flatten(1))
    # The label moves the shifted held target to the demo's next absolute target (window k of
    # demo d ends at step k + 1 and commands target[k + 1]), clamped once.
    nxt = np.concatenate([d.target[1:] for d in demos])
    held = shift[:, -1].numpy() + np.concatenate([d.target[:-1] for d in demos])
    want = np.clip((nxt - held) / task.action_scale, -1, 1)
    np.testing.assert_allclose(relabelled.numpy(), want, atol=1e-4)
    # Not the clamped label shifted: that would keep a saturated step saturated too little.
    shifted = (labels - shift[:, -1] / task.action_scale).clamp(-1, 1)
    assert (shifted - relabelled).abs().max() > 0.2


def test_start_target_is_what_replay_writes(tmp_path):
    from penspin.replay.replay import _append
    from penspin.robot.trial import TrialLog
    from penspin.task.kinematics import FingertipFK

    rng = np.random.default_rng(0)
    log = TrialLog(rng.normal(0, 0.1, (2, 8, 16)).astype(np.float32),
                   rng.normal(0, 0.1, (2, 8, 16)).astype(np.float32), steps=8)
    start = rng.normal(0, 0.1, 16).astype(np.float32)
    _append(tmp_path, log, 1, slice(0, 8), FingertipFK(), False, 4, start)
    _append(tmp_path, log, 0, slice(3, 8), FingertipFK(), False, 9, start)
    whole, late = load_demos(tmp_path)
    assert (whole.trajectory_id, late.trajectory_id) == (4, 9)
    np.testing.assert_allclose(whole.start_target, start, atol=1e-6)
    # A demo kept from step 3 on held the command of step 2 before its first step.
    np.testing.assert_allclose(late.start_target, log.target[0, 2], atol=1e-6)
    np.testing.assert_allclose(late.target, log.target[0, 3:], atol=1e-6)


def test_closed_loop_selection_keeps_the_best_scored_epoch_start_included(tmp_path):
    demos = [_smooth_demo(40, k) for k in range(3)]
    cfg = _cfg(epochs=4, select="proxy", select_every=2)
    model, task, _ = load_start(str(STUDENT), cfg)
    scores = iter([2.0, 1.0, 3.0])  # the start, epoch 2, epoch 4
    tuner = Finetuner(model, task, cfg, demos, tmp_path, str(STUDENT),
                      scorer=lambda m: next(scores))
    history = tuner.train()
    assert history["score"] == [[0, 2.0], [2, 1.0], [4, 3.0]]
    assert load_checkpoint(tmp_path / "best.pt")["counters"]["epoch"] == 4
    with pytest.raises(ConfigError, match="--trajectories"):
        Finetuner(model, task, cfg, demos, tmp_path, str(STUDENT))
    # Epoch 0 is the starting student itself, even where the one that trains is refitted.
    cfg = _cfg(epochs=2, select="proxy", renormalize=True)
    model, task, _ = load_start(str(STUDENT), cfg)
    sim_count = model.obs_rms.count.item()
    scored = []
    tuner = Finetuner(model, task, cfg, demos, tmp_path / "refit", str(STUDENT),
                      scorer=lambda m: scored.append(m) or (5.0 if len(scored) == 1 else 1.0))
    tuner.train()
    assert scored[0] is tuner.start and scored[1] is model
    best = load_checkpoint(tmp_path / "refit" / "best.pt")
    assert best["counters"]["epoch"] == 0 and best["model"]["obs_rms.count"].item() == sim_count
    assert model.obs_rms.count.item() != sim_count
    # The reported evaluation's proxy seeds stay unseen.
    for seed, trials in ((100, 16), (97, 4 * 64)):
        with pytest.raises(ConfigError, match="reported"):
            _cfg(select="proxy", select_seed=seed, select_trials=trials).check()
    _cfg(select="proxy", select_seed=7).check()


def test_score_trials_are_the_demos_trajectories_spread_evenly():
    targets = np.random.default_rng(0).normal(0, 0.3, (6, 50, 16)).astype(np.float32)

    def demo(k, length, tid=None):
        return Demo(f"d{k}", targets[k, :length], targets[k, :length], targets[k, :length],
                    np.zeros((length, 12), np.float32), trajectory_id=tid)

    # Older files: matched by their targets (cut short by a drop, so only a prefix); ids win.
    demos = [demo(4, 30), demo(1, 50), demo(4, 12), demo(0, 20, tid=5)]
    ids = demo_trajectories(demos, targets)
    assert ids.tolist() == [4, 1, 4, 5]
    assert score_trials(ids, 6).tolist() == [1, 1, 4, 4, 5, 5]
    assert score_trials(ids, 2).tolist() == [1, 4]
    other = Demo("x", targets[0, :9] + 0.1, targets[0, :9] + 0.1, targets[0, :9],
                 np.zeros((9, 12), np.float32))
    with pytest.raises(ConfigError, match="none of the 6"):
        demo_trajectories([other], targets)
    with pytest.raises(ConfigError, match="none of the 6"):
        demo_trajectories([demo(0, 9, tid=6)], targets)


def test_update_normalizers_follows_the_real_windows(tmp_path):
    demos = [_smooth_demo(40, k) for k in range(2)]
    for flag in (False, True):
        cfg = _cfg(epochs=2, val_ratio=0.0, update_normalizers=flag)
        model, task, _ = load_start(str(STUDENT), cfg)
        count, mean = model.obs_rms.count.item(), model.obs_rms.mean.clone()
        tuner = Finetuner(model, task, cfg, demos, tmp_path, str(STUDENT))
        tuner.train()
        if not flag:
            assert model.obs_rms.count.item() == count and torch.equal(model.obs_rms.mean, mean)
            continue
        # Every training window, once per epoch, merged into the simulation's statistics.
        assert model.obs_rms.count.item() == pytest.approx(count + 2 * len(tuner.train_idx))
        real = tuner.windows.batch(tuner.train_idx)[0]["obs"].mean(0)
        assert (model.obs_rms.mean - real).abs().sum() < (mean - real).abs().sum()
        # The frozen start keeps what simulation measured.
        assert torch.equal(tuner.start.obs_rms.mean, mean)


def test_dedup_weighs_every_trajectory_as_one_demo_in_the_loss(tmp_path):
    base = _smooth_demo(40, 0)
    demos = [_repeat(base, r) for r in range(3)] + [_smooth_demo(40, 1)]
    losses = {}
    for dedup in (True, False):
        cfg = _cfg(val_ratio=0.0, dedup=dedup)
        model, task, _ = load_start(str(STUDENT), cfg)
        tuner = Finetuner(model, task, cfg, demos, tmp_path, str(STUDENT))
        idx = torch.arange(len(tuner.windows))
        inputs, labels = tuner.windows.batch(idx)
        with torch.no_grad():
            per = (model(inputs).clamp(-1, 1) - labels).abs().sum(-1)
            losses[dedup] = tuner.loss(idx, False).item()
        repeated = tuner.windows.group == tuner.windows.group[0]
        assert repeated.sum() == 3 * 39
        want = (per[repeated].mean() + per[~repeated].mean()) / 2 if dedup else per.mean()
        assert losses[dedup] == pytest.approx(want.item(), rel=1e-5)
    assert losses[True] != pytest.approx(losses[False], rel=1e-3)


def test_anchor_to_the_start_labels_simulated_states_with_the_frozen_start(tmp_path):
    cfg = _cfg(epochs=1, val_ratio=0.0, anchor="start", anchor_weight=0.5, sim_samples=32)
    model, task, _ = load_start(str(STUDENT), cfg)
    tuner = Finetuner(model, task, cfg, [_smooth_demo(40, 0)], tmp_path, str(STUDENT))
    inputs, labels = tuner.sim
    with torch.no_grad():
        assert torch.allclose(labels, tuner.start.act_inference(inputs), atol=1e-5)
    tuner.train()
    # The start stays frozen while the student moves.
    moved = any(not torch.equal(a, b) for a, b in zip(model.parameters(),
                                                      tuner.start.parameters(), strict=True))
    assert moved
    with pytest.raises(ConfigError, match="anchor=start"):
        _cfg(anchor_weight=0.5).check()


def test_anchor_weight_pulls_the_actions_towards_the_starts(tmp_path):
    demos = [_smooth_demo(40, k) for k in range(2)]
    gaps = {}
    for weight in (0.0, 50.0):
        # sim_ratio=0: the L2 pull alone, no simulated samples collected.
        cfg = _cfg(epochs=4, val_ratio=0.0, anchor="start", anchor_weight=weight, sim_ratio=0.0)
        model, task, _ = load_start(str(STUDENT), cfg)
        tuner = Finetuner(model, task, cfg, demos, tmp_path, str(STUDENT))
        assert tuner.sim is None
        tuner.train()
        inputs, _ = tuner.windows.batch(tuner.train_idx)
        with torch.no_grad():
            gaps[weight] = (model(inputs) - tuner.start(inputs)).pow(2).sum(-1).mean().item()
    assert gaps[50.0] < 0.5 * gaps[0.0], gaps


# Finetuning -------------------------------------------------------------------------------------
def _cfg(**kw) -> FinetuneConfig:
    base = dict(epochs=5, batch_size=32, learning_rate=1e-3, val_ratio=0.25, progress=False,
                seed=0)
    return FinetuneConfig(**{**base, **kw})


def test_finetune_from_student_lowers_the_loss_and_writes_loadable_checkpoints(tmp_path):
    demos = [_smooth_demo(60, k) for k in range(4)]
    cfg = _cfg()
    model, task, payload = load_start(str(STUDENT), cfg)
    assert payload["kind"] == "student"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuner = Finetuner(model, task, cfg, demos, tmp_path, str(STUDENT))
    # 59 windows a demo (one ending at every step from 1), one demo of four held out.
    assert len(tuner.train_idx) == 3 * 59 and len(tuner.val_idx) == 59
    history = tuner.train()
    assert len(history["train"]) == 5 and len(history["val"]) == 6
    assert all(math.isfinite(x) for x in history["train"] + history["val"])
    assert history["train"][-1] < 0.9 * history["train"][0], history["train"]
    # The normalisers of a pretrained student are kept (renormalize is off).
    assert torch.equal(model.obs_rms.mean, before["obs_rms.mean"])

    for name in ("best.pt", "last.pt"):
        assert (tmp_path / name).is_file()
    last = load_checkpoint(tmp_path / "last.pt", expected_kind="student")
    assert last["counters"]["epoch"] == 5
    assert last["finetune"]["source"] == str(STUDENT)
    assert last["finetune"]["train_windows"] == 177 and last["finetune"]["val_windows"] == 59
    assert last["finetune"]["history"]["train"] == pytest.approx(history["train"])
    best = load_checkpoint(tmp_path / "best.pt", expected_kind="student")
    # best.pt is the lowest validation loss, the starting point (epoch 0) included.
    assert best["counters"]["epoch"] == int(np.argmin(history["val"]))

    policy = load_policy(tmp_path / "best.pt")
    assert policy.kind == "student"
    assert policy.task.action_scale == pytest.approx(task.action_scale)
    inputs, _ = tuner.windows.batch(torch.arange(4))
    action = policy.act(inputs)
    assert action.shape == (4, 16) and action.abs().max() <= 1.0
    # The weights moved away from the starting checkpoint.
    moved = load_checkpoint(tmp_path / "last.pt")["model"]
    assert any(not torch.equal(moved[k], before[k]) for k in before if k.startswith("actor"))

    out = export_student(tmp_path / "last.pt", tmp_path / "export")
    meta = json.loads((out / "student.json").read_text())
    assert (out / "student.safetensors").stat().st_size > 0
    assert meta["model_args"]["input_mode"] == "proprio"
    assert meta["action_scale"] == pytest.approx(SCALE)


def test_fresh_student_fits_its_normalisers_and_trains(tmp_path):
    demos = [_smooth_demo(60, k) for k in range(3)]
    cfg = _cfg(epochs=3, val_ratio=0.0)
    model, task, payload = load_start("", cfg)
    assert payload == {}
    tuner = Finetuner(model, task, cfg, demos, tmp_path, "")
    inputs, _ = tuner.windows.batch(tuner.train_idx)
    torch.testing.assert_close(model.obs_rms.mean, inputs["obs"].mean(0), atol=1e-5, rtol=1e-5)
    assert model.obs_rms.count.item() == len(tuner.train_idx)
    history = tuner.train()
    assert math.isnan(history["val"][-1])  # nothing held out: best.pt follows the train loss
    assert history["train"][-1] < history["train"][0], history["train"]
    assert load_policy(tmp_path / "best.pt").kind == "student"
    assert load_checkpoint(tmp_path / "last.pt")["finetune"]["source"] == ""


def test_renormalize_refits_a_pretrained_students_normalisers(tmp_path):
    demos = [_smooth_demo(40, k) for k in range(2)]
    cfg = _cfg(renormalize=True, val_ratio=0.0)
    model, task, _ = load_start(str(STUDENT), cfg)
    assert model.obs_rms.count.item() > 1e4  # statistics of the simulated data
    tuner = Finetuner(model, task, cfg, demos, tmp_path, str(STUDENT))
    inputs, _ = tuner.windows.batch(tuner.train_idx)
    # Replaced outright by the real data's, not merged into the simulation's.
    assert model.obs_rms.count.item() == len(tuner.train_idx) == 2 * 39
    torch.testing.assert_close(model.obs_rms.mean, inputs["obs"].mean(0), atol=1e-5, rtol=1e-5)
    # pad_start=false: only the full windows (the original's), 10 a demo.
    cfg = _cfg(renormalize=True, val_ratio=0.0, pad_start=False)
    model, task, _ = load_start(str(STUDENT), cfg)
    tuner = Finetuner(model, task, cfg, demos, tmp_path, str(STUDENT))
    assert len(tuner.windows) == len(tuner.train_idx) == model.obs_rms.count.item() == 2 * 10
    inputs, _ = tuner.windows.batch(tuner.train_idx)
    np.testing.assert_array_equal(inputs["proprio_hist"][0, 0].numpy(),
                                  _entry(demos[0], 1))  # the first window is full
    np.testing.assert_array_equal(inputs["proprio_hist"][0, -1].numpy(), _entry(demos[0], 30))


def test_touch_students_need_demos_with_touch_and_train_on_it(tmp_path):
    cfg = _cfg(epochs=3, val_ratio=0.0, input_mode="proprio-tactile")
    model, task, _ = load_start("", cfg)
    assert model.use_tactile
    with pytest.raises(ConfigError, match="no touch"):
        Finetuner(model, task, cfg, [_smooth_demo(40, 0)], tmp_path, "")
    demos = [_smooth_demo(40, k) for k in range(2)]
    for d in demos:  # touch that says which way the targets move: a learnable signal
        step = np.diff(d.target, axis=0, prepend=d.target[:1])
        d.extras[TOUCH_KEY] = np.concatenate([step > 0, step < 0], 1).astype(np.float32)
    tuner = Finetuner(model, task, cfg, demos, tmp_path, "")
    inputs, _ = tuner.windows.batch(tuner.train_idx)
    assert inputs["tactile_hist"].shape == (len(tuner.train_idx), 30, 32)
    history = tuner.train()
    assert history["train"][-1] < history["train"][0], history["train"]
    assert load_policy(tmp_path / "last.pt").model.use_tactile


def test_simulated_oracle_samples_are_mixed_into_training_batches(tmp_path, monkeypatch):
    demos = [_smooth_demo(40, k) for k in range(2)]
    cfg = _cfg(epochs=1, val_ratio=0.0, sim_oracle=str(ROOT / "checkpoints" / "oracle.pt"),
               sim_samples=48, sim_ratio=0.75)
    model, task, _ = load_start(str(STUDENT), cfg)
    tuner = Finetuner(model, task, cfg, demos, tmp_path, str(STUDENT))
    inputs, labels = tuner.sim
    assert labels.shape == (48, 16) and labels.abs().max() <= 1.0
    assert inputs["proprio_hist"].shape == (48, 30, 32) and inputs["obs"].shape == (48, 96)
    sizes = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x, **kw: sizes.append(len(x["obs"]))
                        or forward(x, **kw))
    tuner.train()
    # 78 real windows in batches of 32: each gains 3x as many simulated samples (a 0.75 share);
    # the last holds the remaining 14 real windows and 42 simulated ones.
    assert sizes == [128, 128, 56]

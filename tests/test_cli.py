"""End-to-end smoke runs of every command on tiny settings, plus the oracle ablation switches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from penspin.cli import main
from penspin.config import apply_overrides
from penspin.oracle.run import OracleRunConfig, build
from penspin.oracle.trainer import OracleTrainConfig
from penspin.rl.checkpoint import load_checkpoint
from penspin.task.config import TaskConfig
from penspin.task.grasps import CACHE_KEYS, load_cache

TINY = ["env.num_envs=4", "env.num_threads=1", "train.ppo.horizon_length=4",
        "train.ppo.num_minibatches=1", "train.ppo.mini_epochs=1", "train.logger=none",
        "train.progress=false"]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("grasps", "view", "render", "train-oracle", "eval", "release", "plot",
                "train-student", "train-student-rl", "export-student"):
        assert cmd in out


def test_keys_lists_config(capsys):
    main(["train-oracle", "--keys"])
    out = capsys.readouterr().out
    assert "env.num_envs=256" in out and "train.ppo.horizon_length=12" in out


def test_train_oracle_departs_from_penspin_in_the_four_documented_settings():
    penspin = apply_overrides(OracleRunConfig(), [
        "env.obs.num_points=100", "env.randomization.friction_dist=uniform",
        "train.ppo.mini_epochs=5", "train.ppo.bounds_loss_coef=0"])
    assert penspin.env == TaskConfig() and penspin.train == OracleTrainConfig()


def test_overrides_may_follow_options(capsys):
    main(["train-oracle", "env.num_envs=8", "--keys", "env.seed=3"])
    out = capsys.readouterr().out
    assert "env.num_envs=256" in out  # --keys lists defaults, overrides parsed without error


def test_unknown_key_is_a_clear_cli_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train-oracle", "--run-dir", str(tmp_path), "env.bogus=1"])
    assert exc.value.code == 2
    assert "unknown config key 'bogus'" in capsys.readouterr().err


def test_grasps_command_writes_a_cache(tmp_path):
    out = tmp_path / "cache.npz"
    main(["grasps", "--out", str(out), "rows_per_scale=3", "batch=64", "scales=[0.28]",
          "num_threads=1"])
    cache = load_cache(out)
    assert set(CACHE_KEYS) <= set(cache)
    assert len(cache["q"]) == 3 and np.all(cache["pen_pos"][:, 2] > 0.6)


def test_train_resume_and_eval_commands(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    main(["train-oracle", "--run-dir", str(run), "train.max_env_steps=48",
          "train.save_every=2", *TINY, "train.logger=tensorboard", "train.bf16=true"])
    last = run / "last.pt"
    assert last.exists() and (run / "config.json").exists() and (run / "best.pt").exists()
    payload = load_checkpoint(last, "oracle")
    assert payload["counters"]["env_steps"] == 48
    assert payload["config"]["env"]["num_envs"] == 4
    # Without --run-dir a resume continues in the checkpoint's own folder; a machine without
    # native bf16 resumes a bf16 run in float32 (emulated bf16 is ~20x slower).
    monkeypatch.setattr("penspin.oracle.run.cpu_has_bf16", lambda: False)
    main(["train-oracle", "--resume", str(last), "train.max_env_steps=64"])
    resumed = load_checkpoint(last, "oracle")
    assert resumed["counters"]["env_steps"] == 64
    assert resumed["config"]["train"]["bf16"] is False
    assert "no native bf16" in capsys.readouterr().out
    out = tmp_path / "eval.json"
    main(["eval", "--checkpoint", str(last), "--episodes", "3", "--out", str(out),
          "episode_length=5", "num_threads=1"])
    metrics = json.loads(out.read_text())
    assert metrics["episodes"] == 3
    assert 0 < metrics["time_to_fall_s"]["mean"] <= 5 * 0.05 + 1e-6
    assert sum(b["episodes"] for b in metrics["per_friction"].values()) == 3
    fell = round(3 * (1 - metrics["survival_rate"]["mean"]))
    assert sum(metrics["falls_per_2s"]) == fell
    assert "survival to 0.25 s" in capsys.readouterr().out  # the horizon: 5 steps of 0.05 s

    slim = tmp_path / "slim.pt"
    main(["release", str(last), str(slim)])
    released = load_checkpoint(slim, "oracle")
    assert "ppo" not in released and "env_state" not in released
    assert slim.stat().st_size < last.stat().st_size
    both = tmp_path / "both.json"
    main(["eval", "--checkpoint", str(last), str(slim), "--episodes", "2", "--out", str(both),
          "episode_length=3"])
    compared = json.loads(both.read_text())["policies"]
    assert len(compared) == 2  # same weights, same episodes: identical metrics
    assert compared[0]["time_to_fall_s"] == compared[1]["time_to_fall_s"]
    assert "| policy | kind |" in capsys.readouterr().out

    png = tmp_path / "curves.png"
    main(["plot", str(run), "--out", str(png)])
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_eval_refuses_a_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(bad), "--episodes", "1"])


@pytest.mark.parametrize(
    "override, check",
    [
        ("env.obs.tactile=false", lambda tr: tr.model.input_shapes["priv_info"] == (29,)),
        ("env.obs.point_cloud=false", lambda tr: "point_cloud" not in tr.model.input_shapes),
        ("train.network.use_priv=false", lambda tr: "priv_info" not in tr.model.input_shapes),
    ],
)
def test_ablation_switches_change_the_model(tmp_path, override, check):
    cfg = apply_overrides(OracleRunConfig(), [*TINY, override])
    trainer = build(cfg, tmp_path)
    full = build(apply_overrides(OracleRunConfig(), TINY), tmp_path / "full")
    assert check(trainer) and not check(full)
    trainer.env.close()
    full.env.close()


def test_eval_compares_oracles_with_different_inputs_on_the_same_episodes(tmp_path, capsys):
    runs = {}
    for name, switch in (("full", []), ("no-touch", ["env.obs.tactile=false"]),
                         ("no-pc", ["env.obs.point_cloud=false"])):
        main(["train-oracle", "--run-dir", str(tmp_path / name), *TINY, *switch,
              "train.max_env_steps=16"])
        runs[name] = str(tmp_path / name / "last.pt")
    out = tmp_path / "eval.json"
    main(["eval", "--checkpoint", *runs.values(), "--episodes", "2", "--out", str(out)])
    policies = json.loads(out.read_text())["policies"]
    assert [p["checkpoint"] for p in policies] == list(runs.values())
    # The same episodes for all three: the same pens, by length and by friction.
    counts = [{group: {name: sub["episodes"] for name, sub in p[group].items()}
               for group in ("per_pen_length", "per_friction")} for p in policies]
    assert counts[0] == counts[1] == counts[2]


def test_no_z_spread_ablation_changes_the_reward(tmp_path):
    cfg = apply_overrides(OracleRunConfig(), [*TINY, "env.reward.z_dist_penalty=0"])
    trainer = build(cfg, tmp_path)
    env = trainer.env
    env.reset()
    tilted = torch.tensor([0.9238795, 0.0, 0.3826834, 0.0])  # pen axis 45 deg from vertical
    qpos = env.backend.qpos.numpy().copy()
    qpos[:, 19:23] = tilted.numpy()
    env.backend.set_qpos_qvel(np.arange(4), qpos, np.zeros((4, env.layout.nv)))
    _, _, _, info = env.step(torch.zeros(4, 16))
    assert info["log"]["reward/z_dist_penalty"] > 0.03  # the spread is measured ...
    full = build(apply_overrides(OracleRunConfig(), TINY), tmp_path / "full").env
    assert full.cfg.reward.z_dist_penalty < 0 and env.cfg.reward.z_dist_penalty == 0  # ... not paid
    trainer.env.close()
    full.close()


def test_without_point_cloud_z_spread_uses_pen_ends(tmp_path):
    cfg = apply_overrides(OracleRunConfig(), [*TINY, "env.obs.point_cloud=false"])
    env = build(cfg, tmp_path).env
    env.reset()
    tilted = torch.tensor([0.9238795, 0.0, 0.3826834, 0.0])
    qpos = env.backend.qpos.numpy().copy()
    qpos[:, 19:23] = tilted.numpy()
    env.backend.set_qpos_qvel(np.arange(4), qpos, np.zeros((4, env.layout.nv)))
    _, reward, _, info = env.step(torch.zeros(4, 16))
    assert info["log"]["reward/z_dist_penalty"] > 0.03
    env.close()


def test_openmp_workers_wait_passively_unless_the_user_says_otherwise():
    code = "import penspin, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE"

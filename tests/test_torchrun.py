"""``penspin train-oracle`` and ``train-student`` launched by ``torchrun`` as the README says: 2 CPU
ranks over gloo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from penspin.config import apply_overrides
from penspin.oracle.run import OracleRunConfig, build

TINY = ["env.num_envs=4", "env.num_threads=1", "train.ppo.horizon_length=4",
        "train.ppo.num_minibatches=2", "train.ppo.mini_epochs=1", "train.progress=false",
        "train.save_every=1000"]
STEPS_PER_ITERATION = 4 * 4 * 2  # horizon x envs per rank x ranks


ORACLE = Path(__file__).resolve().parents[1] / "checkpoints" / "oracle.pt"


def _torchrun(*args: str, command: str = "train-oracle") -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "penspin.cli", command, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_two_ranks_train_write_once_and_resume(tmp_path):
    run = tmp_path / "run"
    out = _torchrun(*TINY, f"train.max_env_steps={2 * STEPS_PER_ITERATION}", "--run-dir", str(run))
    assert out.count("checkpoints in") == 1  # rank 0 speaks for both
    first = torch.load(run / "last.pt", weights_only=True)
    assert first["counters"] == {"iteration": 2, "env_steps": 2 * STEPS_PER_ITERATION}
    assert first["config"]["env"]["seed"] == 0  # the configured seed, not rank 1's
    assert len(list((run / "tb").iterdir())) == 1  # one TensorBoard writer: rank 0's

    out = _torchrun("--resume", str(run / "last.pt"),
                    f"train.max_env_steps={3 * STEPS_PER_ITERATION}")
    assert out.count(f"resumed {run / 'last.pt'} at {2 * STEPS_PER_ITERATION} env steps") == 1
    resumed = torch.load(run / "last.pt", weights_only=True)
    assert resumed["counters"] == {"iteration": 3, "env_steps": 3 * STEPS_PER_ITERATION}
    assert any(not torch.equal(resumed["model"][k], v) for k, v in first["model"].items())
    assert len(list((run / "tb").iterdir())) == 2  # plus the resumed launch's


def test_each_rank_seeds_its_own_envs(tmp_path, monkeypatch):
    """Without this every rank would draw the same grasps and noise, wasting its envs."""
    cfg = apply_overrides(OracleRunConfig(), [*TINY, "train.logger=none"])
    seeds = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)  # WORLD_SIZE stays unset: no process group to join
        trainer = build(cfg, tmp_path / rank)
        seeds.append(trainer.env.cfg.seed)
        trainer.env.close()
    assert seeds == [0, 1]


def test_two_ranks_distil_a_student_evaluate_once_and_resume(tmp_path):
    run = tmp_path / "student"
    tiny = ["env.num_envs=4", "env.num_threads=1", "train.horizon=4", "train.num_minibatches=2",
            "train.mini_epochs=1", "train.progress=false", "train.eval_every=1",
            "train.eval_episodes=2", "env.episode_length=4", "train.network.history_encoder=conv"]
    per_iteration = 4 * 4 * 2
    out = _torchrun("--oracle", str(ORACLE), "--run-dir", str(run), *tiny,
                    f"train.max_env_steps={2 * per_iteration}", command="train-student")
    assert out.count("checkpoints in") == 1
    first = torch.load(run / "last.pt", weights_only=True)
    assert first["counters"] == {"iteration": 2, "env_steps": 2 * per_iteration}
    assert 0 < first["best_eval"] <= 4 * 0.05 + 1e-6  # rank 0 ran the held-out episodes
    assert len(list((run / "tb").iterdir())) == 1
    out = _torchrun("--resume", str(run / "last.pt"), f"train.max_env_steps={3 * per_iteration}",
                    command="train-student")
    assert out.count("resumed") == 1
    resumed = torch.load(run / "last.pt", weights_only=True)
    assert resumed["counters"]["env_steps"] == 3 * per_iteration
    assert any(not torch.equal(resumed["model"][k], v) for k, v in first["model"].items())

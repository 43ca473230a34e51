"""PPO finetuning of a distilled student with the oracle's network as critic."""

from __future__ import annotations

import pytest
import torch

from penspin.cli import main
from penspin.oracle.trainer import oracle_from_payload
from penspin.rl.checkpoint import CheckpointError, load_checkpoint
from penspin.student.policy import load_policy
from penspin.student.rl import AsymmetricStudent, StudentRLConfig, StudentRLTrainer
from penspin.student.run_rl import student_from_payload
from penspin.task.config import ObsConfig, TaskConfig
from penspin.task.env import PenSpinEnv

TINY_ENV = ["env.num_envs=4", "env.num_threads=1"]
TINY_PPO = ["train.ppo.horizon_length=4", "train.ppo.num_minibatches=1", "train.ppo.mini_epochs=1",
            "train.logger=none", "train.progress=false"]
TINY_RL = [*TINY_ENV, *TINY_PPO, "train.eval_episodes=2", "env.episode_length=8",
           "train.save_every=1", "train.learn_threads=1"]


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory):
    """A distilled student checkpoint (its oracle travels inside it)."""
    root = tmp_path_factory.mktemp("srl")
    main(["train-oracle", "--run-dir", str(root / "oracle"), "train.max_env_steps=16",
          *TINY_ENV, *TINY_PPO])
    main(["train-student", "--oracle", str(root / "oracle" / "last.pt"), "--run-dir",
          str(root / "student"), *TINY_ENV, "train.horizon=4", "train.num_minibatches=1",
          "train.mini_epochs=1", "train.logger=none", "train.progress=false",
          "train.eval_every=0", "train.max_env_steps=16", "train.network.history_encoder=conv"])
    return root / "student" / "last.pt"


def test_the_student_acts_and_the_oracle_network_values(student_ckpt):
    payload = load_checkpoint(student_ckpt)
    student, critic = student_from_payload(payload), oracle_from_payload(payload["oracle"])
    env = PenSpinEnv(TaskConfig(num_envs=4, num_threads=1))
    obs = env.reset()
    env.close()
    agent = AsymmetricStudent(student, critic, init_sigma=0.1).eval()
    res = agent.act(obs)
    with torch.no_grad():
        assert torch.equal(res["mus"], student(obs))
        assert torch.allclose(res["values"], critic.values(obs))
    assert torch.allclose(res["sigmas"], torch.full_like(res["sigmas"], 0.1))
    assert torch.allclose(agent.evaluate(obs, res["actions"])["neglogp"], res["neglogp"])
    assert set(agent.input_shapes) >= {"obs", "proprio_hist", "priv_info", "point_cloud"}
    agent.freeze_actor(True)
    assert not any(p.requires_grad for p in student.parameters()) and not agent.logstd.requires_grad
    assert critic.value.weight.requires_grad and not critic.mu.weight.requires_grad
    agent.freeze_actor(False)
    assert all(p.requires_grad for p in student.parameters())


def test_warmup_holds_the_student_then_ppo_moves_it_and_resume_is_exact(student_ckpt, tmp_path):
    start = load_checkpoint(student_ckpt)["model"]

    def train(run, *extra):
        main(["train-student-rl", "--run-dir", str(run), *extra, *TINY_RL,
              "train.critic_warmup=2", "train.eval_every=100"])

    straight, split = tmp_path / "straight", tmp_path / "split"
    train(split, "--student", str(student_ckpt), "train.max_env_steps=32")
    warm = load_checkpoint(split / "last.pt")
    assert warm["kind"] == "student" and warm["counters"]["env_steps"] == 32
    for k, v in start.items():  # two warm-up iterations: the student has not moved
        assert torch.equal(v, warm["model"][k]), k
    assert warm["ppo"]["lr"] == pytest.approx(1e-4)  # the rate was held, not raised to max_lr
    critic0 = load_checkpoint(student_ckpt)["oracle"]["model"]
    assert not torch.equal(critic0["value.weight"], warm["critic"]["model"]["value.weight"])
    # best.pt is the starting student, scored on the held-out episodes at the first iteration.
    best = load_checkpoint(split / "best.pt")
    assert best["best_eval"] > 0 and all(torch.equal(v, best["model"][k]) for k, v in start.items())

    train(split, "--resume", str(split / "last.pt"), "train.max_env_steps=48")
    train(straight, "--student", str(student_ckpt), "train.max_env_steps=48")
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert any(not torch.equal(v, a["model"][k]) for k, v in start.items())  # PPO moved it
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert torch.equal(a["logstd"], b["logstd"])
    assert a["sources"] == {"student": str(student_ckpt),
                            "oracle": load_checkpoint(student_ckpt)["oracle"]["path"]}
    # A finetuned student is a student checkpoint, on the student's own task (its obs noise).
    policy = load_policy(straight / "last.pt")
    assert policy.kind == "student" and policy.task.randomization.obs_noise_episode == 0.02


def test_bad_starts_are_refused(student_ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train-student-rl"])
    assert "needs --student" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train-student-rl", "--resume", str(student_ckpt)])
    assert "not a train-student-rl checkpoint" in capsys.readouterr().err
    released = tmp_path / "released.pt"
    main(["release", str(student_ckpt), str(released)])
    with pytest.raises(SystemExit):
        main(["train-student-rl", "--student", str(released)])
    assert "--oracle" in capsys.readouterr().err
    payload = load_checkpoint(student_ckpt)
    env = PenSpinEnv(TaskConfig(num_envs=4, num_threads=1, obs=ObsConfig(history_len=10)))
    try:
        with pytest.raises(CheckpointError, match="proprio_hist"):
            StudentRLTrainer(env, StudentRLConfig(logger="none"), student_from_payload(payload),
                             oracle_from_payload(payload["oracle"]), run_dir=tmp_path / "x")
    finally:
        env.close()
    main(["train-student-rl", "--keys"])
    assert "train.critic_warmup=20" in capsys.readouterr().out

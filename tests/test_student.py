"""Step 2: the proprioceptive student, its distillation, DAgger baseline, eval and export."""

from __future__ import annotations

import dataclasses
import json
import math

import mujoco
import numpy as np
import pytest
import torch

from penspin.cli import main
from penspin.config import ConfigError, apply_overrides, to_dict
from penspin.deploy import DeployedStudent
from penspin.rl.checkpoint import load_checkpoint, save_checkpoint
from penspin.rl.networks import OracleActorCritic
from penspin.sim import allegro as A
from penspin.sim import scene
from penspin.student.distill import StudentTrainConfig, StudentTrainer
from penspin.student.network import INPUT_MODES, StudentActorCritic, StudentNetworkConfig
from penspin.student.policy import load_policy
from penspin.student.run_distill import StudentRunConfig, default_config
from penspin.task.config import ObsConfig, TaskConfig
from penspin.task.env import PenSpinEnv
from penspin.task.kinematics import FingertipFK

TINY_ENV = ["env.num_envs=4", "env.num_threads=1"]
TINY = [*TINY_ENV, "train.horizon=4", "train.num_minibatches=1", "train.mini_epochs=1",
        "train.logger=none", "train.progress=false", "train.eval_every=0"]


@pytest.fixture(scope="module")
def oracle_ckpt(tmp_path_factory):
    run = tmp_path_factory.mktemp("oracle")
    main(["train-oracle", "--run-dir", str(run), "train.max_env_steps=48", "env.num_envs=4",
          "env.num_threads=1", "train.ppo.horizon_length=4", "train.ppo.num_minibatches=1",
          "train.ppo.mini_epochs=1", "train.logger=none", "train.progress=false"])
    return run / "last.pt"


@pytest.fixture(scope="module")
def env_obs():
    """A few steps of real observations (every key, tactile on) from 8 envs."""
    env = PenSpinEnv(TaskConfig(num_envs=8, num_threads=1))
    obs = env.reset()
    for _ in range(3):
        obs, *_ = env.step(torch.randn(8, 16) * 0.3)
    shapes = dict(env.obs_shapes)
    env.close()
    return obs, shapes


def _student_only(obs: dict) -> dict:
    return {k: v for k, v in obs.items() if k not in ("priv_info", "point_cloud")}


def test_fk_matches_mujoco_fingertip_sites():
    model = mujoco.MjModel.from_xml_string(scene.build_scene_xml())
    data = mujoco.MjData(model)
    qadr = [model.jnt_qposadr[model.joint(n).id] for n in A.JOINT_NAMES]
    sites = [model.site(s).id for s in scene.TIP_SITES]
    rng = np.random.default_rng(0)
    qs = rng.uniform(A.JOINT_LOWER - 0.3, A.JOINT_UPPER + 0.3, size=(32, 16))
    expected = []
    for q in qs:
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        expected.append(data.site_xpos[sites].reshape(12).copy())
    got = FingertipFK()(torch.tensor(qs)).numpy()
    np.testing.assert_allclose(got, np.array(expected), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", INPUT_MODES)
def test_every_input_mode_runs_without_privileged_inputs(env_obs, mode):
    obs, shapes = env_obs
    model = StudentActorCritic.from_obs_shapes(shapes, 16, mode, StudentNetworkConfig()).eval()
    student_obs = _student_only(obs)
    mu = model(student_obs)
    assert mu.shape == (8, 16) and torch.isfinite(mu).all()
    assert model.act_inference(student_obs).abs().max() <= 1.0
    # The mode's extra input really reaches the action (PenSpin's tactile modes crashed).
    for key in ("tactile_hist", "obj_ends"):
        changed = dict(student_obs, **{key: 1.0 - student_obs[key]})
        assert torch.equal(model(changed), mu) != (key in model.input_shapes)


def test_tactile_mode_needs_an_env_with_taxels():
    shapes = {"obs": (96,), "proprio_hist": (30, 32), "obj_ends": (3, 6)}
    with pytest.raises(ConfigError, match="env.obs.tactile=true"):
        StudentActorCritic.from_obs_shapes(shapes, 16, "proprio-tactile", StudentNetworkConfig())


def _labeller_oracle(obs: dict) -> OracleActorCritic:
    """An oracle whose actions vary strongly with the state, as a trained one's do: normaliser
    statistics from real observations and a full-size action head."""
    oracle = OracleActorCritic(priv_dim=obs["priv_info"].shape[1])
    torch.nn.init.normal_(oracle.mu.weight, std=0.1)
    oracle.train()
    oracle.act(obs)  # updates the normalisers
    return oracle.eval()


def test_bc_drives_the_l1_loss_down_on_a_fixed_dataset(tmp_path):
    env = PenSpinEnv(TaskConfig(num_envs=8, num_threads=1))
    cfg = StudentTrainConfig(horizon=16, num_minibatches=2, mini_epochs=10, logger="none",
                             progress=False, fk_noise=0.0)
    obs = env.reset()
    trainer = StudentTrainer(env, cfg, _labeller_oracle(obs), run_dir=tmp_path)
    trainer.obs = obs
    inputs, labels = trainer._collect()
    env.close()

    def l1() -> float:
        trainer.model.eval()
        with torch.no_grad():
            return float((trainer.model.act_inference(inputs) - labels).abs().sum(-1).mean())

    # The best constant action: a student that ignores its inputs cannot beat this.
    constant = float((labels - labels.median(0).values).abs().sum(-1).mean())
    assert constant > 1.0, "labels too easy to make the test meaningful"
    initial = l1()
    for _ in range(3):
        trainer.fit(inputs, labels)
    final = l1()
    assert final < 0.5 * initial and final < 0.5 * constant, (initial, constant, final)


def test_mismatched_or_wrong_kind_oracle_is_refused(oracle_ckpt, tmp_path, capsys):
    no_tactile = TaskConfig(num_envs=4, num_threads=1, obs=ObsConfig(tactile=False))
    oracle = OracleActorCritic(priv_dim=29)
    fake = tmp_path / "oracle_no_tactile.pt"
    save_checkpoint(fake, {"kind": "oracle", "config": {"env": to_dict(no_tactile)},
                           "model_args": oracle.model_args, "model": oracle.state_dict()})
    # By default the student's env is the oracle's own (+ student noise), so it fits ...
    base = default_config(load_checkpoint(fake, "oracle"))
    assert not base.env.obs.tactile and base.env.randomization.obs_noise_step == 0.01
    # ... and turning taxels on gives a 61-d priv vector this oracle cannot read.
    with pytest.raises(SystemExit) as exc:
        main(["train-student", "--oracle", str(fake), "--run-dir", str(tmp_path / "a"),
              "env.obs.tactile=true", *TINY])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "does not fit this env" in err and "priv_info: oracle expects (29,)" in err
    assert "(61,)" in err

    run = tmp_path / "student"
    main(["train-student", "--oracle", str(oracle_ckpt), "--run-dir", str(run),
          "train.max_env_steps=16", *TINY])
    with pytest.raises(SystemExit):
        main(["train-student", "--oracle", str(run / "last.pt"), "--run-dir", str(tmp_path / "b"),
              *TINY])
    assert "is a 'student' checkpoint, but a 'oracle' one is needed" in capsys.readouterr().err


def test_train_student_cli_dagger_resume_is_exact(oracle_ckpt, tmp_path):
    def train(run, *extra):
        main(["train-student", "--run-dir", str(run), *extra, *TINY, "train.save_every=1"])

    straight, split, dagger = tmp_path / "straight", tmp_path / "split", tmp_path / "dagger"
    train(straight, "--oracle", str(oracle_ckpt), "train.max_env_steps=48")
    train(split, "--oracle", str(oracle_ckpt), "train.max_env_steps=32")
    train(split, "--resume", str(split / "last.pt"), "train.max_env_steps=48")
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert a["kind"] == "student" and a["counters"]["env_steps"] == b["counters"]["env_steps"] == 48
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert a["config"]["env"]["randomization"]["obs_noise_episode"] == 0.02
    assert json.loads((straight / "config.json").read_text())["oracle"] == str(oracle_ckpt)
    assert (straight / "best.pt").exists() and (straight / "git.txt").exists()

    train(dagger, "--oracle", str(oracle_ckpt), "--dagger", "train.max_env_steps=16",
          "train.input_mode=proprio-tactile-ends")
    payload = load_checkpoint(dagger / "last.pt", "student")
    assert payload["config"]["train"]["dagger"] is True
    assert payload["model_args"]["input_mode"] == "proprio-tactile-ends"
    # The oracle travels inside the checkpoint: resuming needs no --oracle.
    main(["train-student", "--resume", str(dagger / "last.pt"), *TINY, "train.save_every=1",
          "train.max_env_steps=32"])  # no --run-dir: the checkpoint's own folder
    assert load_checkpoint(dagger / "last.pt")["counters"]["env_steps"] == 32


def test_train_student_needs_an_oracle(capsys):
    with pytest.raises(SystemExit):
        main(["train-student"])
    assert "needs --oracle" in capsys.readouterr().err
    main(["train-student", "--keys"])
    out = capsys.readouterr().out
    assert "train.input_mode=proprio" in out and "env.randomization.obs_noise_step=0.01" in out


def _random_student_ckpt(path, mode: str, shapes: dict, obs: dict,
                         encoder: str = "transformer") -> StudentActorCritic:
    """A student with random weights and real normaliser statistics, saved as a checkpoint."""
    torch.manual_seed(INPUT_MODES.index(mode))
    model = StudentActorCritic.from_obs_shapes(shapes, 16, mode,
                                               StudentNetworkConfig(history_encoder=encoder))
    model.update_normalizers(obs)
    save_checkpoint(path, {"kind": "student", "config": to_dict(StudentRunConfig()),
                           "model_args": model.model_args, "model": model.state_dict()})
    return model.eval()


@pytest.mark.parametrize("mode,encoder", [*((m, "transformer") for m in INPUT_MODES),
                                          ("proprio", "conv"), ("proprio-tactile-ends", "conv")])
def test_exported_student_acts_like_the_trained_one(env_obs, tmp_path, mode, encoder):
    obs, shapes = env_obs
    model = _random_student_ckpt(tmp_path / "s.pt", mode, shapes, obs, encoder)
    main(["export-student", "--checkpoint", str(tmp_path / "s.pt"), "--out", str(tmp_path / "x")])
    meta = json.loads((tmp_path / "x" / "student.json").read_text())
    assert meta["action_scale"] == pytest.approx(1 / 24) and meta["control_hz"] == 20
    assert meta["joint_names"][4] == "thumb_0" and len(meta["joint_upper"]) == 16
    deployed = DeployedStudent.load(tmp_path / "x")
    expected = model.act_inference(obs)
    extra = {k: obs[k] for k in ("tactile_hist", "obj_ends") if k in model.input_shapes}
    for i in range(len(expected)):
        got = deployed.act(obs["proprio_hist"][i], obs["obs"][i], obs["proprio_hist"][i, -1, :16],
                           **{k: v[i] for k, v in extra.items()})
        torch.testing.assert_close(got, expected[i], atol=1e-5, rtol=0)
    if extra:
        with pytest.raises(ValueError, match="needs"):
            deployed.act(obs["proprio_hist"][0], obs["obs"][0], obs["proprio_hist"][0, -1, :16])


def test_eval_runs_a_student_checkpoint(oracle_ckpt, tmp_path, capsys):
    run = tmp_path / "student"
    main(["train-student", "--oracle", str(oracle_ckpt), "--run-dir", str(run),
          "train.max_env_steps=16", *TINY])
    policy = load_policy(run / "last.pt")
    assert policy.kind == "student" and policy.task.randomization.obs_noise_episode == 0.02
    out = tmp_path / "eval.json"
    main(["eval", "--checkpoint", str(run / "last.pt"), "--episodes", "2", "--out", str(out),
          "episode_length=5", "num_threads=1"])
    metrics = json.loads(out.read_text())
    assert metrics["policy_kind"] == "student" and metrics["episodes"] == 2


def test_conv_history_encoder_reads_the_history(env_obs):
    obs, shapes = env_obs
    cfg = StudentNetworkConfig(history_encoder="conv")
    model = StudentActorCritic.from_obs_shapes(shapes, 16, "proprio", cfg).eval()
    student_obs = _student_only(obs)
    older = student_obs["proprio_hist"].clone()
    older[:, 0] += 0.5  # only the oldest step changes: the receptive field covers it
    assert not torch.equal(model(dict(student_obs, proprio_hist=older)), model(student_obs))
    assert sum(p.numel() for p in model.proprio_encoder.parameters()) < sum(
        p.numel() for p in StudentActorCritic().proprio_encoder.parameters())
    with pytest.raises(ConfigError, match="history_encoder"):
        apply_overrides(StudentRunConfig(), ["train.network.history_encoder=lstm"])


def test_init_from_a_checkpoint_saved_before_history_encoder_existed(oracle_ckpt, env_obs,
                                                                     tmp_path):
    obs, shapes = env_obs
    model = _random_student_ckpt(tmp_path / "old.pt", "proprio", shapes, obs)
    payload = load_checkpoint(tmp_path / "old.pt")
    del payload["model_args"]["history_encoder"]
    save_checkpoint(tmp_path / "old.pt", payload)
    run = tmp_path / "run"
    main(["train-student", "--oracle", str(oracle_ckpt), "--run-dir", str(run),
          f"train.init={tmp_path / 'old.pt'}", "train.learning_rate=1e-9",
          "train.max_env_steps=4", *TINY])
    trained = load_checkpoint(run / "last.pt")["model"]
    torch.testing.assert_close(trained["mu.weight"], model.state_dict()["mu.weight"])


def test_best_checkpoint_is_chosen_by_closed_loop_time_to_fall(oracle_ckpt, tmp_path):
    run = tmp_path / "run"
    main(["train-student", "--oracle", str(oracle_ckpt), "--run-dir", str(run),
          *TINY, "train.max_env_steps=48", "train.eval_every=1", "train.eval_episodes=3",
          "train.save_every=1", "env.episode_length=8"])
    trainer_payload = load_checkpoint(run / "best.pt")
    best = trainer_payload["best_eval"]
    assert 0 < best <= 8 * 0.05 + 1e-6
    # best.pt holds the best score seen, and the score is reproducible: the same held-out
    # episodes every time, whatever the training envs did in between.
    from penspin.config import from_dict
    from penspin.student.run_distill import build
    cfg = from_dict(StudentRunConfig, trainer_payload["config"])
    trainer = build(cfg, tmp_path / "again", load_policy(oracle_ckpt).model)
    trainer.model.load_state_dict(trainer_payload["model"])
    assert trainer.closed_loop()["eval/time_to_fall_s"] == pytest.approx(best)
    assert trainer.closed_loop() == trainer.closed_loop()
    assert load_checkpoint(run / "last.pt")["best_eval"] == best
    trainer.env.close()

    # Before the first evaluation the held-out loss picks best.pt, so short runs have one.
    short = tmp_path / "short"
    main(["train-student", "--oracle", str(oracle_ckpt), "--run-dir", str(short), *TINY,
          "train.max_env_steps=16", "train.eval_every=10"])
    assert load_checkpoint(short / "best.pt")["best_eval"] == -math.inf


def test_closed_loop_selection_draws_episodes_as_evaluated(oracle_ckpt, tmp_path, monkeypatch):
    """A run that trains on arcsine friction is still selected on PenSpin's uniform one."""
    from penspin.student import distill
    from penspin.student.run_distill import build

    cfg = default_config(load_checkpoint(oracle_ckpt))
    cfg = apply_overrides(cfg, [*TINY, "env.randomization.friction_dist=arcsine"])
    trainer = build(cfg, tmp_path / "run", load_policy(oracle_ckpt).model)
    assert trainer.env.cfg.randomization.friction_dist == "arcsine"
    seen, real = [], distill.run_episodes

    def short_run_episodes(act, task, episodes, progress):
        seen.append(task)
        return real(act, dataclasses.replace(task, episode_length=2), 2, progress=progress)

    monkeypatch.setattr(distill, "run_episodes", short_run_episodes)
    trainer.closed_loop()
    trainer.env.close()
    assert seen[0].randomization.friction_dist == "uniform"
    assert seen[0].seed == trainer.cfg.eval_seed


def test_weight_average_is_the_saved_policy_and_resumes_exactly(oracle_ckpt, tmp_path):
    def train(run, *extra):
        main(["train-student", "--run-dir", str(run), *extra, *TINY, "train.save_every=1",
              "train.ema_decay=0.5"])

    straight, split = tmp_path / "straight", tmp_path / "split"
    train(straight, "--oracle", str(oracle_ckpt), "train.max_env_steps=48")
    train(split, "--oracle", str(oracle_ckpt), "train.max_env_steps=32")
    train(split, "--resume", str(split / "last.pt"), "train.max_env_steps=48")
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    for key in ("model", "online_model"):
        for k, v in a[key].items():
            assert torch.equal(v, b[key][k]), (key, k)
    # The policy a checkpoint ships is the average, which lags the online weights.
    assert not torch.equal(a["model"]["mu.weight"], a["online_model"]["mu.weight"])
    assert load_policy(straight / "last.pt").model.state_dict()["mu.weight"].equal(
        a["model"]["mu.weight"])


def test_linear_learning_rate_reaches_zero_at_the_budget(env_obs, tmp_path):
    env = PenSpinEnv(TaskConfig(num_envs=4, num_threads=1))
    cfg = StudentTrainConfig(lr_schedule="linear", max_env_steps=1000, logger="none",
                             progress=False)
    trainer = StudentTrainer(env, cfg, _labeller_oracle(env_obs[0]), run_dir=tmp_path)
    rates = []
    for steps in (0, 250, 1000):
        trainer.env_steps = steps
        rates.append(trainer.learning_rate())
    env.close()
    assert rates == pytest.approx([1e-3, 7.5e-4, 0.0])
    with pytest.raises(ConfigError, match="lr_schedule"):
        StudentTrainConfig(lr_schedule="cosine").check()

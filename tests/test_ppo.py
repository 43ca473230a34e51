"""Oracle learning stack: normaliser, network, PPO, checkpoints, exact resume."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from penspin.oracle.trainer import OracleTrainConfig, OracleTrainer, load_oracle
from penspin.rl import distributed
from penspin.rl.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state_checked,
    save_checkpoint,
)
from penspin.rl.networks import NetworkConfig, OracleActorCritic
from penspin.rl.normalizer import RunningMeanStd
from penspin.rl.ppo import PPOConfig

SMALL_NET = NetworkConfig(actor_units=(64, 64), priv_units=(32, 8), point_units=(16, 16))


class ToyEnv:
    """Contextual bandit that follows the penspin env contract.

    Reward is -mean|a - 0.6 * obs[:16]|; obs is redrawn every step, so only a policy that reads
    its observation scores well. Episodes time out after ``episode_length`` steps or end early
    at random, and finished envs are auto-reset, as the real env does.
    """

    def __init__(self, num_envs=32, seed=0, priv_dim=5, num_points=8, episode_length=8):
        self.num_envs = num_envs
        self.num_actions = 16
        self.device = torch.device("cpu")
        self.max_episode_length = episode_length
        self.obs_shapes = {"obs": (16,), "priv_info": (priv_dim,), "point_cloud": (num_points, 3)}
        self.gen = torch.Generator().manual_seed(seed)
        self.x = torch.zeros(num_envs, 16)
        self.t = torch.zeros(num_envs, dtype=torch.long)
        self.err_sum = np.zeros(num_envs)

    def _rand(self, *shape):
        return torch.rand(*shape, generator=self.gen) * 2 - 1

    def _observe(self):
        self.x = self._rand(self.num_envs, 16)
        priv = self._rand(self.num_envs, self.obs_shapes["priv_info"][0])
        points = self._rand(self.num_envs, *self.obs_shapes["point_cloud"])
        return {"obs": self.x.clone(), "priv_info": priv, "point_cloud": points}

    def reset(self):
        self.t.zero_()
        return self._observe()

    def step(self, actions):
        assert actions.shape == (self.num_envs, 16) and actions.abs().max() <= 1
        err = (actions - 0.6 * self.x).abs().mean(-1)
        self.err_sum += err.numpy()
        self.t += 1
        fail = torch.rand(self.num_envs, generator=self.gen) < 0.02
        time_out = (self.t >= self.max_episode_length) & ~fail
        done = fail | time_out
        idx = done.numpy()
        episode = {
            "reward": torch.zeros(int(idx.sum())),
            "length": self.t[done].float(),
            "rotation_speed": torch.from_numpy(-self.err_sum[idx]).float() / self.t[done],
        }
        self.t[done] = 0
        self.err_sum[idx] = 0
        info = {"time_outs": time_out, "episode": episode, "log": {"abs_err": err.mean().item()}}
        return self._observe(), -err, done, info

    def get_state(self):
        return {
            "gen": self.gen.get_state(),
            "x": self.x.clone(),
            "t": self.t.clone(),
            "err_sum": self.err_sum.copy(),
        }

    def set_state(self, state):
        self.gen.set_state(state["gen"])
        self.x = state["x"].clone()
        self.t = state["t"].clone()
        self.err_sum = state["err_sum"].copy()


def _cfg(iterations, num_envs=32, horizon=8, **kw):
    ppo = PPOConfig(horizon_length=horizon, num_minibatches=2, mini_epochs=2)
    return OracleTrainConfig(
        ppo=ppo,
        network=SMALL_NET,
        max_env_steps=iterations * horizon * num_envs,
        logger="none",
        progress=False,
        **kw,
    )


def _policy_error(model, env):
    obs = env.reset()
    return (model.act_inference(obs) - 0.6 * obs["obs"]).abs().mean().item()


def test_ppo_learns_toy_task(tmp_path):
    env = ToyEnv(num_envs=128, seed=1)
    # gamma 0.5: in a bandit, future rewards are pure noise in the advantage; the rest is default.
    cfg = OracleTrainConfig(
        ppo=PPOConfig(horizon_length=16, gamma=0.5, num_minibatches=2),
        network=SMALL_NET,
        max_env_steps=40 * 16 * 128,
        logger="tensorboard",
        progress=False,
        seed=3,
        save_every=10,
    )
    trainer = OracleTrainer(env, cfg, tmp_path / "run")
    # A random policy (mu ~ 0, sigma 1) is far from the target, so the thresholds can fail.
    untrained = _policy_error(trainer.model, ToyEnv(num_envs=256, seed=9))
    assert untrained > 0.25
    scalars = trainer.train()
    # Sampled actions: a sigma-1 policy errs by ~0.7; even mu = 0 errs by 0.3 deterministically.
    assert scalars["env/abs_err"] < 0.35, scalars
    assert _policy_error(trainer.model, ToyEnv(num_envs=256, seed=9)) < 0.12
    assert scalars["episode/length"] > 1 and "episode/rotation_speed" in scalars

    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text())["ppo"]["horizon_length"] == 16
    assert (run / "git.txt").read_text().strip()
    assert any((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    model = load_oracle(run / "last.pt")
    assert _policy_error(model, ToyEnv(num_envs=256, seed=9)) < 0.12


def test_resume_matches_uninterrupted_run(tmp_path):
    straight = OracleTrainer(ToyEnv(seed=5), _cfg(4, seed=11), tmp_path / "straight")
    straight.train()

    first = OracleTrainer(ToyEnv(seed=5), _cfg(2, seed=11, save_every=2), tmp_path / "killed")
    first.train()
    del first  # the "killed" process: only last.pt survives
    resumed = OracleTrainer(ToyEnv(seed=5), _cfg(4, seed=11), tmp_path / "resumed")
    resumed.resume(tmp_path / "killed" / "last.pt")
    assert resumed.iteration == 2 and resumed.ppo.lr != 0
    resumed.train()

    assert resumed.iteration == straight.iteration == 4
    assert resumed.env_steps == straight.env_steps
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.ppo.lr == straight.ppo.lr
    sa, sb = straight.ppo.optimizer.state_dict(), resumed.ppo.optimizer.state_dict()
    for i in sa["state"]:
        assert torch.equal(sa["state"][i]["exp_avg_sq"], sb["state"][i]["exp_avg_sq"])
    assert torch.equal(straight.obs["obs"], resumed.obs["obs"])
    assert straight.episodes.means() == resumed.episodes.means()
    assert straight.best_reward == resumed.best_reward


def test_resume_without_env_state_warns_and_continues(tmp_path):
    first = OracleTrainer(ToyEnv(), _cfg(1), tmp_path / "a")
    first.train()
    env = ToyEnv()
    env.set_state = None  # an env that cannot restore its state
    resumed = OracleTrainer(env, _cfg(2), tmp_path / "b")
    with pytest.warns(UserWarning, match="not bit for bit"):
        resumed.resume(tmp_path / "a" / "last.pt")
    resumed.train()
    assert resumed.iteration == 2


def test_checkpoint_loads_weights_only_and_roundtrips(tmp_path):
    trainer = OracleTrainer(ToyEnv(), _cfg(1), tmp_path / "run")
    trainer.train()
    raw = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert raw["kind"] == "oracle" and raw["format_version"] == 1
    assert raw["config"]["seed"] == 42
    assert {"model", "ppo", "rng", "env_state", "counters", "obs"} <= raw.keys()
    assert "obs_rms.mean" in raw["model"] and "value_rms.count" in raw["model"]
    payload = load_checkpoint(tmp_path / "run" / "last.pt", expected_kind="oracle")
    assert isinstance(payload["env_state"]["err_sum"], np.ndarray)  # numpy survives the trip
    assert isinstance(payload["rng"]["numpy"][1], np.ndarray)


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")

    trainer = OracleTrainer(ToyEnv(), _cfg(1), tmp_path / "run")
    trainer.train()
    good = tmp_path / "run" / "last.pt"
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated, expected_kind="oracle")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(garbage)

    student = save_checkpoint(tmp_path / "student.pt", {"kind": "student", "w": torch.ones(2)})
    with pytest.raises(CheckpointError, match="'student' checkpoint, but a 'oracle'"):
        load_checkpoint(student, expected_kind="oracle")
    with pytest.raises(CheckpointError, match="'student' checkpoint"):
        OracleTrainer(ToyEnv(), _cfg(1), tmp_path / "other").resume(student)

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"kind": "oracle", "x": np.ones(2)}, unsafe)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(unsafe)

    # An env without tactile gives priv 29-style shapes: the resume names what differs.
    other = OracleTrainer(ToyEnv(priv_dim=3), _cfg(1), tmp_path / "priv3")
    with pytest.raises(CheckpointError, match="priv_dim: checkpoint 5, current 3"):
        other.resume(good)
    state = load_checkpoint(good)["model"]
    with pytest.raises(CheckpointError, match=r"priv_mlp.0.weight: checkpoint \(32, 5\)"):
        load_state_checked(other.model, state)
    with pytest.raises(CheckpointError, match="unexpected point_mlp.0.weight"):
        small = OracleActorCritic(obs_dim=16, priv_dim=5, use_point_cloud=False, **_units())
        load_state_checked(small, state)


def _units():
    return {"actor_units": (64, 64), "priv_units": (32, 8), "point_units": (16, 16)}


def test_atomic_save_leaves_no_temp_file(tmp_path):
    path = tmp_path / "a" / "ck.pt"
    save_checkpoint(path, {"kind": "oracle", "x": torch.arange(3)})
    save_checkpoint(path, {"kind": "oracle", "x": torch.arange(4)})
    assert [p.name for p in path.parent.iterdir()] == ["ck.pt"]
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(4))
    with pytest.raises(TypeError, match=r"payload\['bad'\]"):
        save_checkpoint(path, {"kind": "oracle", "bad": object()})
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(4))


def test_normaliser_matches_stream_statistics():
    rms = RunningMeanStd((3,))
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(7, 5, 3, generator=gen) * 2 + torch.tensor([1.0, -3.0, 0.5])]
    batches += [torch.randn(11, 5, 3, generator=gen) * 0.5 for _ in range(3)]
    for b in batches:
        rms(b)
    flat = torch.cat([b.reshape(-1, 3) for b in batches]).double()
    assert torch.allclose(rms.mean.double(), flat.mean(0), atol=1e-5)
    assert torch.allclose(rms.var.double(), flat.var(0, unbiased=False), atol=1e-5)
    assert rms.count.item() == flat.shape[0]

    rms.eval()
    before = rms.mean.clone()
    x = torch.tensor([[1.0, -3.0, 100.0]])
    y = rms(x)
    assert torch.equal(rms.mean, before)  # frozen outside train mode
    expected = (x - rms.mean) / torch.sqrt(rms.var + 1e-5)
    assert torch.allclose(y[0, :2], expected[0, :2]) and y[0, 2] == 5.0  # clipped to +-5
    assert torch.allclose(rms(y, denorm=True)[0, :2], x[0, :2], atol=1e-5)
    assert set(rms.state_dict()) == {"mean", "var", "count"}


@pytest.mark.parametrize(
    ("shapes", "priv_in", "has_points"),
    [
        ({"obs": (96,), "priv_info": (61,), "point_cloud": (100, 3)}, 61, True),
        ({"obs": (96,), "priv_info": (29,), "point_cloud": (100, 3)}, 29, True),
        ({"obs": (96,), "point_cloud": (100, 3)}, None, True),
        ({"obs": (96,), "priv_info": (61,)}, 61, False),
        ({"obs": (96,)}, None, False),
    ],
)
def test_network_shapes_and_ablations(shapes, priv_in, has_points):
    model = OracleActorCritic.from_obs_shapes(shapes, 16, NetworkConfig())
    extrin = (8 if priv_in else 0) + (32 if has_points else 0)
    assert model.actor_mlp[0].in_features == 96 + extrin
    assert [m.out_features for m in model.actor_mlp if isinstance(m, torch.nn.Linear)] == [
        512,
        256,
        128,
    ]
    assert hasattr(model, "priv_mlp") == (priv_in is not None)
    assert hasattr(model, "point_mlp") == has_points
    if priv_in:
        assert model.priv_mlp[0].in_features == priv_in and model.priv_mlp[-1].out_features == 8
        assert not isinstance(model.priv_mlp[-1], torch.nn.ELU)
    assert all(torch.count_nonzero(m.bias) == 0 for m in model.modules() if hasattr(m, "bias"))
    assert torch.allclose(model.logstd.exp(), torch.full((16,), NetworkConfig().init_sigma))

    obs = {k: torch.randn(5, *s) for k, s in shapes.items()}
    out = model.act(obs)
    assert out["actions"].shape == out["mus"].shape == out["sigmas"].shape == (5, 16)
    assert out["neglogp"].shape == out["values"].shape == (5,)
    det = model.act_inference(obs)
    assert det.shape == (5, 16) and det.abs().max() <= 1
    ev = model.evaluate(obs, out["actions"])
    assert torch.allclose(ev["neglogp"], out["neglogp"], atol=1e-5)
    dist = torch.distributions.Normal(out["mus"], out["sigmas"])
    assert torch.allclose(-dist.log_prob(out["actions"]).sum(-1), out["neglogp"], atol=1e-4)


def test_point_encoder_pools_before_its_last_elu_without_changing_the_features():
    model = OracleActorCritic(obs_dim=4, priv_dim=3, num_points=7)
    points = torch.randn(5, 7, 3)
    # PenSpin's order: an ELU on every point, then the max-pool
    per_point = torch.nn.functional.elu(model.point_mlp(model.point_rms(points)))
    reference = torch.tanh(torch.cat([model.priv_mlp(model.priv_rms(torch.zeros(5, 3))),
                                      per_point.max(dim=-2).values], -1))
    captured = []
    model.actor_mlp[0].register_forward_hook(lambda m, i, o: captured.append(i[0]))
    model._forward({"obs": torch.zeros(5, 4), "priv_info": torch.zeros(5, 3),
                    "point_cloud": points})
    assert torch.allclose(captured[0][:, 4:], reference, atol=1e-6)


def test_network_config_switches_inputs_off():
    shapes = {"obs": (96,), "priv_info": (61,), "point_cloud": (100, 3)}
    model = OracleActorCritic.from_obs_shapes(
        shapes, 16, NetworkConfig(use_priv=False, use_point_cloud=False)
    )
    assert set(model.input_shapes) == {"obs"} and model.actor_mlp[0].in_features == 96


def test_distributed_helpers_are_noops_with_one_rank(monkeypatch):
    for value in (None, "1"):
        if value is None:
            monkeypatch.delenv("WORLD_SIZE", raising=False)
        else:
            monkeypatch.setenv("WORLD_SIZE", value)
        monkeypatch.delenv("RANK", raising=False)
        assert distributed.world_size() == 1 and distributed.rank() == 0
        assert distributed.is_rank0()
        t = torch.tensor([1.0, 2.0])
        assert distributed.all_reduce_mean(t) is t and torch.equal(t, torch.tensor([1.0, 2.0]))
        assert distributed.broadcast(t) is t and torch.equal(t, torch.tensor([1.0, 2.0]))
        assert not torch.distributed.is_initialized()


def _gloo_worker(rank, port, out):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank)
    )
    mean = distributed.all_reduce_mean(torch.tensor([float(rank)]))
    rms = RunningMeanStd(())
    rms(torch.full((4,), float(rank)))  # rank 0 sees zeros, rank 1 ones
    got = distributed.broadcast(torch.tensor([float(rank) + 7]))
    out[rank] = torch.stack([mean[0], rms.mean, rms.var, got[0]])
    torch.distributed.destroy_process_group()


def test_distributed_gloo_two_ranks():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_gloo_worker, args=(port, out), nprocs=2)
    for r in (0, 1):
        assert torch.allclose(out[r], torch.tensor([0.5, 0.5, 0.25, 7.0]))


def test_update_reports_how_far_the_action_mean_leaves_its_range(tmp_path):
    env = ToyEnv(num_envs=16)
    trainer = OracleTrainer(env, _cfg(1, num_envs=16), tmp_path / "run")
    with torch.no_grad():
        trainer.model.mu.bias[:4] = 2.0  # 4 of 16 joints' means far outside [-1, 1]
    scalars = trainer.train()
    assert scalars["policy/mu_beyond_1"] == pytest.approx(0.25, abs=0.01)
    assert 1.9 < scalars["policy/mu_abs_max"] < 2.1


@pytest.mark.parametrize("min_sigma", [0.0, 0.5])
def test_min_sigma_floors_the_policy_std(tmp_path, min_sigma):
    env = ToyEnv(num_envs=16)
    cfg = _cfg(2, num_envs=16)
    cfg.ppo.min_sigma = min_sigma
    trainer = OracleTrainer(env, cfg, tmp_path / "run")  # starts at sigma 0.3, below 0.5
    trainer.train()
    sigma = trainer.model.logstd.exp()
    if min_sigma:
        assert sigma.min() >= min_sigma * (1 - 1e-6) and sigma.max() < min_sigma * 1.01
    else:
        assert sigma.max() < 0.5


def test_resume_keeps_an_adapted_rate_but_takes_a_new_fixed_one(tmp_path):
    env = ToyEnv(num_envs=16)
    trainer = OracleTrainer(env, _cfg(2, num_envs=16), tmp_path / "run")
    trainer.train()
    state = trainer.ppo.state_dict()
    state["lr"] = 3e-3
    for schedule, expected in (("adaptive", 3e-3), ("fixed", 1e-5)):
        cfg = _cfg(2, num_envs=16)
        cfg.ppo.lr_schedule, cfg.ppo.learning_rate, cfg.ppo.min_lr = schedule, 1e-5, 1e-6
        resumed = OracleTrainer(ToyEnv(num_envs=16), cfg, tmp_path / schedule)
        resumed.ppo.load_state_dict(state)
        assert resumed.ppo.lr == expected
        assert all(g["lr"] == expected for g in resumed.ppo.optimizer.param_groups)

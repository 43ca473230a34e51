"""The gymnasium wrapper: API conformance, seeding, types, and episode ends."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from penspin.task.gym_env import ENV_ID, PenSpinGymEnv


@pytest.fixture
def env():
    e = PenSpinGymEnv()
    yield e
    e.close()


def test_check_env_passes_with_only_the_unbounded_space_warnings():
    env = gymnasium.make(ENV_ID)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    env.close()
    other = [str(w.message) for w in caught if "infinity" not in str(w.message)]
    assert not other


def test_make_by_module_path_registers_and_builds():
    env = gymnasium.make(f"penspin.task.gym_env:{ENV_ID}", overrides=["obs.tactile=false"])
    assert "tactile_hist" not in env.observation_space.spaces
    env.close()


def test_equal_seeds_give_equal_first_observations(env):
    other = PenSpinGymEnv()
    a, _ = env.reset(seed=7)
    b, _ = other.reset(seed=7)
    c, _ = other.reset(seed=8)
    other.close()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["priv_info"], c["priv_info"])


def test_step_returns_gymnasium_types(env):
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.keys() == env.observation_space.spaces.keys()
    for key, value in obs.items():
        assert isinstance(value, np.ndarray) and value.dtype == np.float32
        assert value.shape == env.observation_space[key].shape
    assert obs in env.observation_space
    assert type(reward) is float
    assert type(terminated) is bool and type(truncated) is bool
    assert isinstance(info, dict) and isinstance(info["log"]["reward/total"], float)


def test_a_fall_returns_the_observation_the_episode_ended_in(env):
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):  # full-scale actions drop the pen within a few steps
        obs, _, terminated, truncated, info = env.step(np.ones(16, np.float32))
        steps += 1
    assert terminated and not truncated and info["episode"]["fell"]
    assert info["episode"]["length"] == steps
    # A fresh episode's history repeats its first row; the finished one has moved.
    assert steps >= 2 and not np.allclose(obs["proprio_hist"][-1], obs["proprio_hist"][0])
    fresh = env.env.observations["proprio_hist"][0].numpy()
    assert np.allclose(fresh, fresh[0])


def test_time_out_is_truncation():
    env = PenSpinGymEnv(overrides=["episode_length=3"])
    env.reset(seed=0)
    flags = [env.step(np.zeros(16, np.float32))[2:4] for _ in range(3)]
    env.close()
    assert flags == [(False, False), (False, False), (False, True)]

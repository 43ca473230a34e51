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


def test_render_draws_the_current_state_as_rgb():
    env = PenSpinGymEnv(render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(env.render(), first)  # same state, same picture
    for _ in range(3):
        env.step(np.full(16, 0.5, np.float32))
    assert not np.array_equal(env.render(), first)  # the hand and pen moved
    env.close()


def test_record_video_writes_an_mp4_of_an_episode(tmp_path):
    import imageio.v2 as imageio
    from gymnasium.wrappers import RecordVideo

    env = gymnasium.make(ENV_ID, render_mode="rgb_array", width=64, height=48,
                         overrides=["episode_length=5"])
    assert env.metadata["render_fps"] == pytest.approx(20)
    env = RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda _: True,
                      disable_logger=True)
    env.reset(seed=0)
    truncated = False
    while not truncated:
        truncated = env.step(np.zeros(16, np.float32))[3]
    env.close()
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1
    with imageio.get_reader(videos[0]) as reader:
        assert reader.count_frames() == 6  # the reset frame and one per step


def test_render_mode_is_checked_and_required():
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        PenSpinGymEnv(render_mode="human")
    with pytest.raises(ValueError, match="render_mode must be None or one of"), \
            pytest.warns(UserWarning, match="not in the possible render_modes"):
        gymnasium.make(ENV_ID, render_mode="ansi")
    env = PenSpinGymEnv()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode='rgb_array'"):
        assert env.render() is None
    env.close()

"""The simulated world: physics, observations, reward, randomisation and configuration."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from penspin.config import ConfigError, apply_overrides
from penspin.sim import allegro as A
from penspin.sim import scene
from penspin.sim.cpu_backend import CpuBackend
from penspin.sim.model_params import capsule_inertia
from penspin.task.config import ObsConfig, RandomizationConfig, RewardConfig, TaskConfig
from penspin.task.env import PenSpinEnv
from penspin.task.rewards import RewardTerms, compute_reward
from penspin.task.rotations import angular_velocity, quat_about_z, quat_mul

QUIET = RandomizationConfig(force_scale=0.0, action_noise_episode=0.0, action_noise_step=0.0)


def make_env(n: int = 8, **kw) -> PenSpinEnv:
    env = PenSpinEnv(TaskConfig(num_envs=n, num_threads=1, **kw))
    env.reset()
    return env


def move_pen(env: PenSpinEnv, i: int, pos, quat=None) -> None:
    lay = env.layout
    qpos = env.backend.qpos[i].numpy().copy()
    qpos[lay.pen_qpos.start:lay.pen_qpos.start + 3] = pos
    if quat is not None:
        qpos[lay.pen_qpos.start + 3:lay.pen_qpos.stop] = quat
    env.backend.set_qpos_qvel(np.array([i]), qpos[None], np.zeros((1, lay.nv)))


def test_observation_shapes_and_dtypes():
    env = make_env(4)
    obs, reward, done, info = env.step(torch.zeros(4, 16))
    for key, shape in env.obs_shapes.items():
        assert obs[key].shape == (4, *shape), key
        assert obs[key].dtype == torch.float32, key
        assert torch.isfinite(obs[key]).all(), key
    assert obs["priv_info"].shape == (4, 61)
    assert obs["point_cloud"].shape == (4, 100, 3)
    assert obs["proprio_hist"].shape == (4, 30, 32)
    assert reward.shape == (4,) and reward.dtype == torch.float32
    assert done.dtype == torch.bool and info["time_outs"].dtype == torch.bool
    env.close()


def test_ablation_switches_change_observations():
    env = make_env(2, obs=ObsConfig(tactile=False, point_cloud=False))
    obs = env.observations
    assert obs["priv_info"].shape == (2, 29)
    assert "point_cloud" not in obs and "tactile_hist" not in obs
    env.close()


def test_pen_without_contact_falls_and_terminates():
    env = make_env(2, randomization=QUIET)
    move_pen(env, 0, (0.3, 0.0, 0.62))
    fell_at = None
    for t in range(20):
        _, _, done, info = env.step(torch.zeros(2, 16))
        if done[0]:
            fell_at = t
            assert not info["time_outs"][0]
            assert info["episode"]["fell"][0]
            break
    assert fell_at is not None and fell_at < 10
    env.close()


def test_fall_penalty_lands_on_the_falling_step_only():
    rewards = []
    for penalty in (0.0, -10.0):
        env = make_env(2, randomization=QUIET, reward=RewardConfig(fall_penalty=penalty))
        move_pen(env, 0, (0.3, 0.0, 0.62))
        steps = []
        for _ in range(10):
            _, reward, done, _ = env.step(torch.zeros(2, 16))
            steps.append((reward.clone(), done.clone()))
            if done[0]:
                break
        env.close()
        rewards.append(steps)
    assert len(rewards[0]) == len(rewards[1]) < 10
    for (r0, d0), (r1, d1) in zip(*rewards, strict=True):
        assert torch.equal(d0, d1)
        assert torch.allclose(r1 - r0, -10.0 * d0.float())


def test_most_cache_states_survive_zero_action():
    n = 256
    env = PenSpinEnv(TaskConfig(num_envs=n, randomization=QUIET, seed=1))
    env.reset()
    alive = torch.ones(n, dtype=torch.bool)
    for _ in range(32):  # 1.6 s
        _, _, done, _ = env.step(torch.zeros(n, 16))
        alive &= ~done
    env.close()
    assert alive.float().mean() >= 0.9, f"only {alive.float().mean():.2f} held the pen for 1.6 s"


def test_pd_tracks_a_step_target():
    backend = CpuBackend(1, nthread=1)
    qpos = backend.qpos.numpy().copy()
    qpos[0, :16] = A.REAL_INIT_QPOS
    qpos[0, 16:19] = (1.0, 0.0, 0.62)  # pen far from the hand
    backend.set_qpos_qvel(np.array([0]), qpos, np.zeros((1, backend.model.nv)))
    target = A.REAL_INIT_QPOS.copy()
    target[[1, 5, 9]] += 0.3
    backend.ctrl[:] = torch.from_numpy(target)
    for _ in range(20):  # 1 s
        backend.step()
    err = np.abs(backend.qpos[0, :16].numpy() - target)
    assert err.max() < 0.02, err
    backend.close()


def _spin_reward(angle: float) -> float:
    q_prev = torch.tensor([[0.7071068, 0.0, 0.7071068, 0.0]])
    q_now = quat_mul(quat_about_z(torch.tensor([angle])), q_prev)
    angvel = angular_velocity(q_now, q_prev, 0.05)
    z = torch.zeros(1, 16)
    terms = RewardTerms(angvel=angvel, linvel=torch.zeros(1, 3), q=z, init_q=z, torque=z,
                        qvel=z, points_z=torch.zeros(1, 2),
                        pen_pos=torch.tensor([[0, -0.01, 0.625]]))
    reward, log = compute_reward(terms, RewardConfig(), torch.tensor([0.0, 0.0, 1.0]),
                                 torch.tensor(RewardConfig().position_target))
    return float(reward[0]), log


def test_rotation_about_plus_z_is_rewarded_minus_z_penalised():
    r_pos, log = _spin_reward(0.02)  # 0.4 rad/s
    r_neg, _ = _spin_reward(-0.02)
    assert r_pos > 0.35 and r_neg < -0.35
    assert log["rotation_speed"] == pytest.approx(0.4, rel=1e-3)
    r_fast, _ = _spin_reward(0.1)  # 2 rad/s: clipped at 0.5, penalised above 1 rad/s
    assert r_fast < 0.5


def test_env_reports_rotation_of_a_pen_turned_by_hand():
    env = make_env(1, randomization=QUIET)
    quat = env._pen_quat()[0]
    turned = quat_mul(quat_about_z(torch.tensor(0.02)), quat)
    env.pen_quat_prev = quat[None]
    move_pen(env, 0, env._pen_pos()[0].numpy(), turned.numpy())
    omega = angular_velocity(env._pen_quat(), env.pen_quat_prev, env.dt)
    assert omega[0, 2] == pytest.approx(0.4, rel=1e-3)
    env.close()


def test_pressed_taxel_reads_one_and_free_taxels_zero():
    cfg = TaskConfig(num_envs=1, num_threads=1,
                     obs=ObsConfig(tactile_latency=0.0, tactile_dropout=0.0))
    env = PenSpinEnv(cfg)
    env.reset()
    model, data = env.backend.model, mujoco.MjData(env.backend.model)
    data.qpos[:16] = A.REAL_INIT_QPOS
    mujoco.mj_kinematics(model, data)
    tip = data.site("index_tip")
    finger_dir = tip.xmat.reshape(3, 3)[:, 2]
    radius = float(env.pen_radius[0])
    side = np.cross(finger_dir, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    pos = tip.xpos + finger_dir * (A.TIP_RADIUS + radius - 0.0015)
    quat = np.zeros(4)
    frame = np.column_stack([finger_dir, np.cross(side, finger_dir), side])
    mujoco.mju_mat2Quat(quat, frame.ravel())
    qpos = env.backend.qpos.numpy().copy()
    qpos[0, :16] = A.REAL_INIT_QPOS
    qpos[0, 16:19], qpos[0, 19:23] = pos, quat
    env.backend.set_qpos_qvel(np.array([0]), qpos, np.zeros((1, model.nv)))
    env.backend.refresh_sensors(np.array([0]))
    env._update_tactile()
    taxels = env.tactile[0]
    index_tip0 = len(scene.PAD_TAXELS)  # first fingertip taxel: the index fingertip pole
    assert taxels[index_tip0] == 1.0
    assert taxels.sum() <= 3  # only the pressed pad (and at most its neighbours)
    assert taxels[: len(scene.PAD_TAXELS)].sum() == 0
    env.close()


def test_randomised_quantities_in_range_and_per_env():
    n = 64
    env = make_env(n)
    rc = env.cfg.randomization
    checks = {
        "pen_mass": rc.mass, "pen_friction": rc.friction, "pen_restitution": rc.restitution,
        "kp": rc.kp, "kd": rc.kd, "pen_com": (-rc.com, rc.com),
        "pen_scale": (0.28 - 0.025, 0.29 + 0.025),
        "pen_length": (0.08 * 5 * 0.255, 0.08 * 6.5 * 0.315),
    }
    for name, (lo, hi) in checks.items():
        value = getattr(env, name)
        assert value.min() >= lo - 1e-6 and value.max() <= hi + 1e-6, name
        assert value.std() > 0, f"{name} does not vary across envs"
    lay = env.layout
    for i in (0, n - 1):  # the physics really uses each env's own values
        m = env.backend.models[i]
        assert m.body_mass[lay.pen_body] == pytest.approx(float(env.pen_mass[i]))
        assert m.geom_size[lay.pen_geom, 0] == pytest.approx(float(env.pen_radius[i]))
        assert m.actuator_gainprm[:, 0] == pytest.approx(env.kp[i].double().numpy())
    assert env.obs_noise_e.std() > 0 and env.action_noise_e.std() > 0
    env.close()


def test_arcsine_friction_weights_both_ends_of_the_range():
    fractions = {}
    for dist in ("uniform", "arcsine"):
        env = make_env(2, randomization=RandomizationConfig(friction_dist=dist))
        f = env._friction(100_000)
        env.close()
        assert f.min() >= 0.3 and f.max() <= 3.0
        ends = (f < 0.3 + 0.27) | (f > 3.0 - 0.27)  # the outer tenth at each end
        fractions[dist] = ends.float().mean().item()
    assert fractions["uniform"] == pytest.approx(0.2, abs=0.01)
    assert fractions["arcsine"] == pytest.approx(0.41, abs=0.01)  # 2 x (2/pi) asin(sqrt(0.1))
    with pytest.raises(ConfigError, match="friction_dist"):
        TaskConfig(randomization=RandomizationConfig(friction_dist="beta")).check()


def test_a_policy_trained_on_skewed_friction_is_evaluated_and_distilled_on_uniform(tmp_path):
    from penspin.config import to_dict
    from penspin.rl.checkpoint import save_checkpoint
    from penspin.rl.networks import OracleActorCritic
    from penspin.student.policy import load_policy
    from penspin.student.run_distill import default_config

    trained = TaskConfig(seed=5, randomization=RandomizationConfig(friction_dist="arcsine"))
    model = OracleActorCritic(actor_units=(8,), priv_units=(8, 4), point_units=(4,))
    payload = {"kind": "oracle", "model": model.state_dict(), "model_args": model.model_args,
               "config": {"env": to_dict(trained)}}
    save_checkpoint(tmp_path / "oracle.pt", payload)
    for task in (load_policy(tmp_path / "oracle.pt").task, default_config(payload).env):
        assert task.randomization.friction_dist == "uniform"
        assert task.seed == 5  # everything else is the checkpoint's


def test_capsule_inertia_matches_mujoco():
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><body><freejoint/><geom type="capsule" size="0.01 0.05" '
        'mass="0.015"/></body></worldbody></mujoco>')
    ours = capsule_inertia(np.array([0.015]), np.array([0.01]), np.array([0.05]))[0]
    assert ours == pytest.approx(model.body_inertia[1], rel=1e-6)


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = make_env(4, seed=seed)
        gen = torch.Generator().manual_seed(0)
        out = []
        for _ in range(15):
            a = torch.rand(4, 16, generator=gen) * 2 - 1
            obs, r, _, _ = env.step(a)
            out.append(torch.cat([obs["obs"].flatten(), obs["priv_info"].flatten(), r]))
        env.close()
        return torch.stack(out)

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_state_from_another_device_kind_reseeds_with_a_warning():
    env = make_env(2)
    env.step(torch.zeros(2, 16))
    state = env.get_state()
    assert state["rng_device"] == "cpu"
    state["rng_device"] = "cuda"  # a CUDA generator's state: 16 bytes, unreadable on a CPU
    state["rng"] = torch.zeros(16, dtype=torch.uint8)
    with pytest.warns(UserWarning, match="reseeding"):
        env.set_state(state)
    assert torch.equal(env.get_state()["physics"], state["physics"])
    env.step(torch.zeros(2, 16))
    env.close()


def test_no_stale_observation_after_reset():
    env = make_env(2, randomization=QUIET)
    move_pen(env, 0, (0.3, 0.0, 0.62))
    for _ in range(10):
        obs, _, done, _ = env.step(torch.zeros(2, 16))
        if done[0]:
            break
    assert done[0]
    # The returned observation is the new episode's: fresh pen pose, fresh targets, history full
    # of the new grasp rather than the old episode.
    assert torch.allclose(obs["priv_info"][0, :3], env._pen_pos()[0])
    assert obs["priv_info"][0, 2] > 0.6
    targets = obs["obs"][0].reshape(3, 32)[:, 16:]
    assert torch.allclose(targets, env.targets[0].expand(3, 16))
    assert torch.allclose(obs["proprio_hist"][0, :, 16:], env.targets[0].expand(30, 16))
    env.close()


def test_actions_move_targets_by_one_24th_radian_and_clamp():
    env = make_env(1, randomization=QUIET)
    before = env.targets.clone()
    env.step(torch.full((1, 16), 1.0))
    delta = env.targets - before
    moved = (before + 1 / 24) <= env.upper
    assert torch.allclose(delta[moved], torch.full_like(delta[moved], 1 / 24), atol=1e-6)
    for _ in range(60):
        env.step(torch.full((1, 16), 1.0))
    assert (env.targets <= env.upper + 1e-6).all()
    env.close()


def test_bad_configuration_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        apply_overrides(TaskConfig(), ["nope=1"])
    with pytest.raises(ConfigError, match="num_envs must be a positive integer"):
        apply_overrides(TaskConfig(), ["num_envs=-4"])
    with pytest.raises(ConfigError, match="expected int"):
        apply_overrides(TaskConfig(), ["num_envs=many"])
    with pytest.raises(FileNotFoundError, match="penspin grasps"):
        PenSpinEnv(TaskConfig(num_envs=1, grasp_cache=str(tmp_path / "missing.npz")))
    with pytest.raises(ValueError, match="actions must have shape"):
        make_env(2).step(torch.zeros(3, 16))


def test_cpu_backend_tensors_are_views_of_the_rollout_arrays():
    backend = CpuBackend(2, nthread=1)
    assert backend.qpos.dtype == torch.float64 and backend.diverged.dtype == torch.bool
    backend.qpos[1, 0] = 0.125  # torch views share memory with the numpy arrays rollout steps
    backend.ctrl[0, 3, 2] = 0.5
    assert backend.state[1, 1] == 0.125 and backend.control[0, 3, 2] == 0.5
    backend.step()
    assert np.array_equal(backend.sensordata.numpy(), backend.sensor_out[:, -1])
    backend.close()

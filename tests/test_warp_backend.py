"""The MuJoCo Warp backend (on Warp's CPU device) against the CPU backend, and its config errors.

``PENSPIN_WARP_DEVICE=cuda pytest tests/test_warp_backend.py`` runs the same checks on a GPU.

Warp computes in float32 and the CPU backend in float64, and grasps are chaotic (a contact that
slips in one and sticks in the other), so parity is checked over a short horizon with smooth
actions, at tolerances a few times what was measured (docs/gpu.md). Kernels compile once (about a
minute) into Warp's cache, ~/.cache/warp; later runs load them in seconds.
"""

import dataclasses
import os
import warnings

import numpy as np
import pytest
import torch

from penspin.config import ConfigError
from penspin.sim import warp_backend
from penspin.task.config import TaskConfig
from penspin.task.env import PenSpinEnv

N = 4
STEPS = 5
DEVICE = os.environ.get("PENSPIN_WARP_DEVICE", "cpu")
# Worst over STEPS control steps and 4 envs, seeds 0-2: joints 5.5e-4 rad, pen position 3.3e-4 m,
# pen quaternion 3.5e-2 (spin about the pen's own axis is the least constrained), touch 0.15 N,
# reward 0.18 (its rotation term follows the pen's angular velocity). The CPU backend moves
# ~100x less from a 1e-6 change of the start state: this is float32 vs float64, not chaos.
TOL = {"joints": 2e-3, "pen_pos": 1.5e-3, "pen_quat": 0.1, "touch": 0.4, "reward": 0.4}


def _cfg(**kw) -> TaskConfig:
    return TaskConfig(num_envs=N, num_threads=1, **kw)


def _deterministic(**kw) -> TaskConfig:
    """No random draws after a reset (noise, pushes, taxel latency and dropout): a CUDA generator
    draws other numbers than a CPU one from the same seed, so only then can a GPU env follow a
    CPU env step by step."""
    task = _cfg(**kw)
    return dataclasses.replace(
        task, obs=dataclasses.replace(task.obs, tactile_latency=0.0, tactile_dropout=0.0,
                                      ends_noise=0.0),
        randomization=dataclasses.replace(task.randomization, obs_noise_step=0.0,
                                          action_noise_step=0.0, force_prob=0.0))


def _follow(cpu: PenSpinEnv, gpu: PenSpinEnv) -> None:
    """Put the GPU env where the CPU env is: its state and the pen's point template."""
    gpu.template_radial = cpu.template_radial.to(gpu.device)
    gpu.template_axial = cpu.template_axial.to(gpu.device)
    with warnings.catch_warnings():  # the generator is reseeded across device kinds
        warnings.simplefilter("ignore")
        gpu.set_state(cpu.get_state())


def test_config_rejects_unknown_backend_and_device():
    for bad in (dict(backend="gpu"), dict(device="cuda"), dict(backend="warp", device="tpu")):
        with pytest.raises(ConfigError):
            _cfg(**bad).check()
    _cfg(backend="warp", device="cuda:1").check()


def test_missing_mujoco_warp_names_the_extra(monkeypatch):
    monkeypatch.setattr(warp_backend, "mjw", None)
    with pytest.raises(ConfigError, match=r"penspin\[gpu\]"):
        PenSpinEnv(_cfg(backend="warp"))


@pytest.fixture(scope="module")
def envs():
    pytest.importorskip("mujoco_warp")
    pair = [PenSpinEnv(_deterministic()),
            PenSpinEnv(_deterministic(backend="warp", device=DEVICE))]
    yield pair
    for env in pair:
        env.close()


def test_cuda_without_a_gpu_is_a_config_error(envs):
    if warp_backend.wp.is_cuda_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        warp_backend.WarpBackend(1, device="cuda")


def _differences(cpu: PenSpinEnv, gpu: PenSpinEnv) -> dict[str, float]:
    lay = cpu.layout
    (qa, sa), (qb, sb) = ((b.qpos.double().cpu(), b.sensordata.double().cpu())
                          for b in (cpu.backend, gpu.backend))
    pen_a, pen_b = qa[:, lay.pen_qpos], qb[:, lay.pen_qpos]
    quat = torch.minimum((pen_a[:, 3:] - pen_b[:, 3:]).abs(), (pen_a[:, 3:] + pen_b[:, 3:]).abs())
    return {"joints": (qa[:, :16] - qb[:, :16]).abs().max().item(),
            "pen_pos": (pen_a[:, :3] - pen_b[:, :3]).abs().max().item(),
            "pen_quat": quat.max().item(),
            "touch": (sa[:, lay.touch] - sb[:, lay.touch]).abs().max().item()}


@pytest.mark.skipif(DEVICE != "cpu", reason="CUDA's generator draws other numbers than the CPU's")
def test_same_seed_same_episode_starts(envs):
    obs = [env.reset() for env in envs]
    for key in obs[0]:
        torch.testing.assert_close(obs[0][key], obs[1][key], atol=1e-5, rtol=0)


def test_same_start_same_actions_same_physics_and_rewards(envs):
    cpu, gpu = envs
    assert isinstance(gpu.backend, warp_backend.WarpBackend)
    cpu.reset()
    gpu.reset()
    _follow(cpu, gpu)
    for key, value in cpu.observations.items():
        torch.testing.assert_close(value, gpu.observations[key].cpu(), atol=1e-5, rtol=0)
    for i in range(N):  # every env's own pen and gains reached the device
        mc, mw = cpu.backend.models[i], gpu.backend.models[i]
        for f in warp_backend._BATCHED:
            np.testing.assert_allclose(getattr(mw, f), getattr(mc, f), rtol=1e-6, atol=1e-7)
    gen = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        actions = 0.3 * torch.randn(N, 16, generator=gen).clamp(-1, 1)
        (_, r_cpu, d_cpu, _), (_, r_gpu, d_gpu, _) = cpu.step(actions), gpu.step(actions)
        diff = _differences(cpu, gpu) | {"reward": (r_cpu - r_gpu.cpu()).abs().max().item()}
        assert all(diff[k] <= TOL[k] for k in TOL), diff
        assert torch.equal(d_cpu, d_gpu.cpu())
        assert not gpu.backend.diverged.any()


def test_state_moves_between_backends_and_subset_resets(envs):
    cpu, gpu = envs
    cpu.reset()
    _follow(cpu, gpu)  # a CPU checkpoint resumes on the warp backend
    actions = torch.zeros(N, 16)
    cpu.step(actions)
    gpu.step(actions)
    assert all(v <= TOL[k] for k, v in _differences(cpu, gpu).items())
    # Resetting one env leaves the others' state and sensors alone.
    before = gpu.backend.get_physics()
    gpu._reset_envs(torch.tensor([2], device=gpu.device))
    after = gpu.backend.get_physics()
    keep = torch.tensor([0, 1, 3])
    for b, a in zip(before, after, strict=True):
        torch.testing.assert_close(a[keep], b[keep], rtol=0, atol=0)
    assert gpu.backend.time[2] == 0.0
    # Checkpoints are float64 on the host on both backends, laid out alike.
    for x, y in zip(cpu.get_state()["physics"], gpu.get_state()["physics"], strict=True):
        assert x.dtype == y.dtype == torch.float64 and x.device == y.device and x.shape == y.shape


def test_backend_arrays_are_device_tensors_without_copies(envs):
    _, gpu = envs
    back = gpu.backend
    assert gpu.device == back.torch_device and gpu.observations["obs"].device == gpu.device
    for name in ("qpos", "qvel", "time", "sensordata", "ctrl", "qfrc"):
        view = getattr(back, name)
        assert view.dtype == torch.float32 and view.device == back.torch_device, name
    assert back.diverged.dtype == torch.bool and back.diverged.device == back.torch_device
    # Writes through the torch views are the physics' own arrays (wp.to_torch shares memory).
    back.qvel[0, 0] = 0.25
    assert back._d.qvel.numpy()[0, 0] == np.float32(0.25)
    assert back.qpos.data_ptr() == back._d.qpos.ptr
    gpu.reset()


def test_divergence_is_flagged_and_the_world_restarts(envs):
    _, gpu = envs
    gpu.reset()
    back = gpu.backend
    back.qvel[1] = float("nan")
    back.step()
    assert back.diverged.tolist() == [False, True, False, False]
    assert torch.isfinite(back.get_physics()[0]).all() and back.time[1] == 0.0
    gpu.reset()
    gpu.step(torch.zeros(N, 16))
    assert not back.diverged.any()



def test_a_blown_up_world_below_the_value_bound_is_flagged_too(envs):
    _, gpu = envs
    gpu.reset()
    back = gpu.backend
    back.qvel[2, -1] = 5e3  # finite and far below 1e10, but no pen spins at 5,000 rad/s
    back.step()
    assert back.diverged.tolist() == [False, False, True, False]
    assert back.time[2] == 0.0 and back.qvel[2].abs().max() < 1e3
    assert not back.overflowed.any() and back.graph == back.device.is_cuda
    gpu.reset()

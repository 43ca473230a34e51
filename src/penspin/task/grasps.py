"""Grasp cache: settled (hand pose, pen pose, pen size) states that episodes start from.

Drops are chaotic, so episodes never start by dropping the pen: they start from states that held
the pen for 1.6 s with the targets frozen. Each row keeps the settled joint angles and the joint
targets that held them: the gap between the two is the grip force, so starting an episode with
targets equal to the settled angles would loosen the grasp.

Generation: canonical grasps + joint noise with the pen laid on the fingertips, then two 1.6 s
holds with freshly randomised physics (the second from the settled state, with a target offset);
kept only if the pen is still above the palm, level, at rest and touched by >= 2 fingertips.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import mujoco
import numpy as np
from tqdm import tqdm

from penspin.config import ConfigError
from penspin.sim import allegro as A
from penspin.sim import scene
from penspin.sim.cpu_backend import CpuBackend

CACHE_KEYS = ("q", "target", "pen_pos", "pen_quat", "radius", "length", "base_scale")
BASE_RADIUS = 0.04  # PenSpin's pen assets: radius 0.04, length/diameter ratio 5..6.5, scaled
LENGTH_RATIOS = (5.0, 5.5, 6.0, 6.5)

# Canonical grasps (penspin joint order): pen on the fingertips, thumb opposing.
CANONICAL_GRASPS = np.array([
    A.REAL_INIT_QPOS,
    [0.0, 1.0, 0.75, 0.45, 1.25, 0.5, 0.75, 0.4, 0.0, 1.0, 0.75, 0.45, 0.0, 1.0, 0.75, 0.45],
    [-0.1, 0.9, 0.8, 0.5, 1.3, 0.6, 0.7, 0.35, 0.0, 1.2, 0.4, 0.3, 0.1, 1.1, 0.8, 0.3],
    [0.1, 1.1, 0.6, 0.4, 1.2, 0.45, 0.8, 0.45, 0.05, 0.9, 0.9, 0.5, 0.1, 0.9, 0.9, 0.5],
])
PEN_YAWS = np.deg2rad([0.0, 45.0, 90.0, 135.0])


@dataclass(frozen=True)
class GraspConfig:
    rows_per_scale: int = 2000  # grasps to keep per base scale
    scales: tuple[float, ...] = (0.28, 0.29)  # base pen scales the cache covers
    scale_range: float = 0.025  # +- around each base scale
    joint_noise: float = 0.05  # rad, noise on the canonical grasp's joints
    batch: int = 512  # candidates simulated together
    settle_time: float = 1.6  # s a candidate holds its target before it is judged
    min_tip_contacts: int = 2  # fingertips that must touch the pen
    max_tilt: float = 0.02  # m, height difference of the pen ends
    min_height: float = 0.605  # m, pen centre height to keep a grasp
    max_speed: float = 0.01  # m/s: still sliding at the end means it is about to fall
    max_spin: float = 0.3  # rad/s
    target_noise: float = 0.01  # rad, per-episode target offset in the robustness pass
    seed: int = 0  # candidate sampling
    num_threads: int = 2  # physics threads
    max_rounds: int = 200  # batches to try before giving up

    def check(self) -> None:
        if self.rows_per_scale < 1:
            raise ConfigError("rows_per_scale must be >= 1")
        if not self.scales:
            raise ConfigError("scales must list at least one pen scale")


def default_cache_path() -> Path:
    return Path(str(resources.files("penspin") / "assets" / "grasp_cache.npz"))


def load_cache(path: str | Path = "", scales: tuple[float, ...] | None = None,
               length: tuple[float, ...] = (), radius: tuple[float, ...] = ()) -> dict:
    """Load a cache file, keeping rows whose base scale is in ``scales`` and whose pen length and
    radius (m) lie in the ``(low, high)`` ranges given (empty: any)."""
    path = Path(path) if path else default_cache_path()
    if not path.exists():
        raise FileNotFoundError(
            f"grasp cache {path} does not exist; generate one with `penspin grasps --out {path}`"
        )
    with np.load(path) as f:
        missing = [k for k in CACHE_KEYS if k not in f]
        if missing:
            raise ConfigError(f"grasp cache {path} lacks keys {missing}")
        cache = {k: f[k] for k in CACHE_KEYS}
    if scales is not None:
        base = cache["base_scale"].astype(np.float64)
        keep = np.isclose(base[:, None], np.asarray(scales)[None], atol=1e-4).any(1)
        if not keep.any():
            have = sorted({round(float(s), 4) for s in base})
            raise ConfigError(f"grasp cache {path} has no rows for scales {scales}; it has {have}")
        cache = {k: v[keep] for k, v in cache.items()}
    keep = np.ones(len(cache["q"]), dtype=bool)
    for key, bounds in (("length", length), ("radius", radius)):
        if bounds:
            keep &= (cache[key] >= bounds[0]) & (cache[key] <= bounds[1])
    if not keep.any():
        raise ConfigError(f"grasp cache {path} has no pen with length in {length or 'any'} and "
                          f"radius in {radius or 'any'} (it has lengths "
                          f"{cache['length'].min():.3f}-{cache['length'].max():.3f} m, radii "
                          f"{cache['radius'].min():.4f}-{cache['radius'].max():.4f} m)")
    return {k: v[keep] for k, v in cache.items()}


def sample_pen_sizes(rng: np.random.Generator, base_scale: np.ndarray, scale_range: float):
    scale = base_scale + rng.uniform(-scale_range, scale_range, size=base_scale.shape)
    ratio = rng.choice(LENGTH_RATIOS, size=base_scale.shape)
    return BASE_RADIUS * scale, 2 * BASE_RADIUS * ratio * scale


def _place_pens(q: np.ndarray, radius: np.ndarray, yaw: np.ndarray):
    """Lay each pen level on top of the fingertips of its hand pose."""
    model = scene.load_model()
    data = mujoco.MjData(model)
    tip_ids = [model.site(s).id for s in scene.TIP_SITES]
    pos = np.empty((len(q), 3))
    for i, qi in enumerate(q):
        data.qpos[:16] = qi
        mujoco.mj_kinematics(model, data)
        tips = data.site_xpos[tip_ids]
        finger_tips = tips[[0, 2, 3]]  # index, middle, ring carry the pen; the thumb opposes
        pos[i, :2] = (finger_tips[:, :2].mean(0) + tips[1, :2]) / 2
        pos[i, 2] = finger_tips[:, 2].max() + A.TIP_RADIUS + radius[i] + 0.002
    # Level pen along world x, then turned about +z by the yaw.
    half = yaw / 2
    level = np.array([np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0])  # local z -> world x
    turn = np.stack([np.cos(half), np.zeros_like(half), np.zeros_like(half), np.sin(half)], -1)
    quat = np.empty((len(q), 4))
    for i in range(len(q)):
        mujoco.mju_mulQuat(quat[i], turn[i], level)
    return pos, quat


def _settle(backend: CpuBackend, cfg: GraspConfig, rng: np.random.Generator, target: np.ndarray,
            qpos: np.ndarray, radius: np.ndarray, length: np.ndarray,
            target_noise: float = 0.0) -> np.ndarray:
    """Hold ``target`` (+ a per-env offset) for ``settle_time`` from ``qpos`` with fresh physics.

    Returns which envs still hold the pen, settled, level and touched by enough fingertips.
    """
    n = backend.num_envs
    ids = np.arange(n)
    backend.set_pen(ids, radius, length, rng.uniform(0.01, 0.02, n),
                    rng.uniform(-0.001, 0.001, (n, 3)), rng.uniform(0.3, 3.0, n),
                    rng.uniform(0.3, 1.0, n))
    backend.set_pd_gains(ids, rng.uniform(2.5, 3.5, (n, 16)), rng.uniform(0.09, 0.11, (n, 16)))
    backend.set_qpos_qvel(ids, qpos, np.zeros((n, backend.model.nv)))
    backend.ctrl.numpy()[:] = (target + rng.normal(0.0, target_noise, target.shape))[:, None, :]
    backend.qfrc[:] = 0.0
    steps = int(round(cfg.settle_time / (backend.substeps * backend.model.opt.timestep)))
    alive = np.ones(n, dtype=bool)
    lay = backend.layout
    qpos_now = backend.qpos.numpy()  # a view: follows the steps
    for _ in range(steps):
        backend.step()
        alive &= ~backend.diverged.numpy() & (qpos_now[:, lay.pen_qpos][:, 2] > cfg.min_height)
    pen = qpos_now[:, lay.pen_qpos]
    ends_dz = pen_ends_dz(pen[:, 3:], length)
    contacts = (backend.sensordata.numpy()[:, lay.tip_contact] > 1e-3).sum(1)
    vel = backend.qvel.numpy()[:, lay.pen_qvel]
    settled = ((np.linalg.norm(vel[:, :3], axis=1) < cfg.max_speed)
               & (np.linalg.norm(vel[:, 3:], axis=1) < cfg.max_spin))
    return alive & settled & (contacts >= cfg.min_tip_contacts) & (ends_dz < cfg.max_tilt)


def pen_ends_dz(quat: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Height difference between the two pen ends (the pen axis is its local z)."""
    w, x, y, _ = quat.T
    axis_z = 1 - 2 * (x * x + y * y)
    return np.abs(axis_z) * length


def generate(cfg: GraspConfig, out: str | Path) -> dict:
    """Generate a cache with ``rows_per_scale`` rows for every scale and write it to ``out``."""
    cfg.check()
    rng = np.random.default_rng(cfg.seed)
    backend = CpuBackend(cfg.batch, nthread=cfg.num_threads)
    rows: dict[str, list] = {k: [] for k in CACHE_KEYS}
    total = cfg.rows_per_scale * len(cfg.scales)
    tried = 0
    with tqdm(total=total, desc="grasps", unit="row") as bar:
        for scale in cfg.scales:
            kept = 0
            for _ in range(cfg.max_rounds):
                if kept >= cfg.rows_per_scale:
                    break
                n = cfg.batch
                canon = rng.integers(len(CANONICAL_GRASPS), size=n)
                noise = rng.uniform(-cfg.joint_noise, cfg.joint_noise, (n, 16))
                q = CANONICAL_GRASPS[canon] + noise
                q = np.clip(q, A.JOINT_LOWER, A.JOINT_UPPER)
                base = np.full(n, scale)
                radius, length = sample_pen_sizes(rng, base, cfg.scale_range)
                yaw = PEN_YAWS[rng.integers(len(PEN_YAWS), size=n)] + rng.uniform(-0.2, 0.2, n)
                pos, quat = _place_pens(q, radius, yaw)
                start = np.concatenate([q, pos, quat], 1)
                ok = _settle(backend, cfg, rng, q, start, radius, length)
                # Second pass from the settled state with new physics: keeps only robust grasps.
                settled = backend.qpos.numpy().copy()
                ok &= _settle(backend, cfg, rng, q, settled, radius, length, cfg.target_noise)
                tried += n
                take = np.flatnonzero(ok)[: cfg.rows_per_scale - kept]
                state = settled[take]
                lay = backend.layout
                rows["q"].append(state[:, lay.hand_qpos])
                rows["target"].append(q[take])
                rows["pen_pos"].append(state[:, lay.pen_qpos][:, :3])
                rows["pen_quat"].append(state[:, lay.pen_qpos][:, 3:])
                rows["radius"].append(radius[take])
                rows["length"].append(length[take])
                rows["base_scale"].append(base[take])
                kept += len(take)
                bar.update(len(take))
                bar.set_postfix(kept_rate=f"{bar.n / max(tried, 1):.2f}")
            if kept < cfg.rows_per_scale:
                raise RuntimeError(
                    f"only {kept} grasps survived for scale {scale} after {cfg.max_rounds} rounds"
                )
    backend.close()
    cache = {k: np.concatenate(v).astype(np.float32) for k, v in rows.items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **cache)
    tmp.replace(out)
    return cache

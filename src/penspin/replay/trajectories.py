"""``penspin export-replay``: oracle trajectories to play open loop on a robot.

The oracle spins pens in simulation; each episode that keeps the pen to the end and turns it
more than ``min_rotation`` is saved as its start state (hand angles and targets, pen pose and
size) and its absolute joint-target sequence. Pens are matched to the robot's objects: for each
proxy pen the episodes start from grasp-cache rows of a pen of about its length and thickness,
as one would export for the pen one is about to place in a real hand. The original's replay
script reads a pickle ``{'position': [T, 16]}``; ``--pickle-dir`` writes one per trajectory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from penspin.config import ConfigError, UserFacingError
from penspin.robot.interface import StartState
from penspin.robot.proxy import ProxyPen, pens_named
from penspin.task.config import TaskConfig
from penspin.task.grasps import load_cache

LENGTH_TOL = 0.006  # m: cache rows within this of the pen's length count as that pen
RADIUS_TOL = 0.001


@dataclass(frozen=True)
class ExportConfig:
    pens: str = "all"  # proxy pens to export for ('all', 'collect', 'unseen' or names)
    per_pen: int = 12  # trajectories wanted per pen
    steps: int = 800  # control steps per trajectory (the paper replayed > 800)
    candidates: int = 64  # episodes rolled out per try
    max_tries: int = 6  # per pen, before giving up with what was found
    min_rotation: float = 2 * math.pi  # rad about +z the oracle must reach in simulation
    pushes: bool = False  # random pushes on the pen while exporting
    seed: int = 0  # episode seed of the oracle rollouts

    def check(self) -> None:
        if self.per_pen < 1 or self.steps < 31 or self.candidates < 1 or self.max_tries < 1:
            raise ConfigError("per_pen, candidates and max_tries must be >= 1 and steps >= 31")


@dataclass
class Trajectories:
    """Open-loop trajectories: start states, pens and absolute targets [E, T, 16] (rad)."""

    start_q: np.ndarray
    start_target: np.ndarray
    pen_pos: np.ndarray
    pen_quat: np.ndarray
    pen_name: np.ndarray  # str [E]
    targets: np.ndarray
    sim_rotation: np.ndarray
    meta: dict

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, ids: np.ndarray) -> Trajectories:
        arrays = {f.name: getattr(self, f.name)[ids] for f in dataclasses.fields(self)
                  if f.name != "meta"}
        return Trajectories(**arrays, meta=self.meta)

    def start_state(self) -> StartState:
        return StartState(self.start_q.astype(np.float64), self.start_target.astype(np.float64),
                          self.pen_pos.astype(np.float64), self.pen_quat.astype(np.float64))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name != "meta"}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, meta=np.array(json.dumps(self.meta)), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trajectories:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; write one with "
                                    "`penspin export-replay --oracle ORACLE.pt --out FILE`")
        names = [f.name for f in dataclasses.fields(cls)]
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = [k for k in names if k not in f]
                if missing:
                    raise UserFacingError(f"{path}: not a trajectory file, missing {missing}")
                data = {k: f[k] for k in names if k != "meta"}
                meta = json.loads(str(f["meta"]))
        except (OSError, ValueError) as exc:
            raise UserFacingError(f"{path}: cannot read trajectories ({exc})") from None
        return cls(**data, meta=meta)

    def write_pickles(self, folder: str | Path) -> list[Path]:
        """One ``{'position': [T, 16]}`` pickle per trajectory, penspin (Isaac) joint order,
        as the original's ``teacher_replay.py --replay_data_dir`` reads."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, targets in enumerate(self.targets):
            path = folder / f"replay_{i:03d}_{self.pen_name[i]}.pkl"
            with path.open("wb") as f:
                pickle.dump({"position": targets.astype(np.float32)}, f)
            paths.append(path)
        return paths


def pen_task(task: TaskConfig, pen: ProxyPen, pushes: bool) -> TaskConfig:
    """The oracle's task restricted to start states of pens shaped like ``pen``."""
    rc = dataclasses.replace(
        task.randomization,
        pen_length=(pen.length - LENGTH_TOL, pen.length + LENGTH_TOL),
        pen_radius=(pen.radius - RADIUS_TOL, pen.radius + RADIUS_TOL),
        force_prob=task.randomization.force_prob if pushes else 0.0)
    # Fails now, not after minutes of rollouts, when the cache has no such pen.
    load_cache(task.grasp_cache, rc.pen_scales, rc.pen_length, rc.pen_radius)
    return dataclasses.replace(task, randomization=rc)


def rollout_pen(act, task: TaskConfig, cfg: ExportConfig, seed: int) -> dict:
    """One batch of oracle episodes of ``task``; keeps the successful ones."""
    from penspin.task.env import PenSpinEnv

    env = PenSpinEnv(dataclasses.replace(task, num_envs=cfg.candidates, seed=seed,
                                         episode_length=cfg.steps))
    obs = env.reset()
    start = {"start_q": env.init_q.clone(), "start_target": env.targets.clone(),
             "pen_pos": env._pen_pos(), "pen_quat": env._pen_quat()}
    targets = torch.zeros(cfg.candidates, cfg.steps, 16)
    alive = torch.ones(cfg.candidates, dtype=torch.bool)
    rotation = torch.zeros(cfg.candidates)
    for t in range(cfg.steps):
        action = act(obs)
        targets[:, t] = env.next_targets(action)
        obs, _, done, info = env.step(action)
        if done.any():
            ids = done.nonzero().flatten()
            ok = ~info["episode"]["fell"] & alive[ids]
            rotation[ids] = torch.where(ok, info["episode"]["rotation"], rotation[ids])
            alive[ids] = ok
    env.close()
    keep = alive & (rotation > cfg.min_rotation)
    out = {k: v[keep].numpy() for k, v in start.items()}
    out["targets"] = targets[keep].numpy()
    out["sim_rotation"] = rotation[keep].numpy()
    return out


def export(policy, cfg: ExportConfig, progress: bool = True) -> Trajectories:
    cfg.check()
    pens = pens_named(cfg.pens)
    tasks = [pen_task(policy.task, pen, cfg.pushes) for pen in pens]
    parts: dict[str, list] = {}
    bar = tqdm(total=cfg.per_pen * len(pens), desc="export-replay", unit="traj",
               disable=not progress)
    for k, pen in enumerate(pens):
        found = 0
        for attempt in range(cfg.max_tries):
            got = rollout_pen(policy.act, tasks[k], cfg, cfg.seed + 1000 * k + attempt)
            take = min(cfg.per_pen - found, len(got["targets"]))
            for key, value in got.items():
                parts.setdefault(key, []).append(value[:take])
            parts.setdefault("pen_name", []).append(np.array([pen.name] * take))
            found += take
            bar.update(take)
            if found >= cfg.per_pen:
                break
        if found < cfg.per_pen:
            print(f"export-replay: only {found} of {cfg.per_pen} trajectories for {pen.name} "
                  f"after {cfg.max_tries} x {cfg.candidates} episodes")
    bar.close()
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    if not len(arrays["targets"]):
        raise UserFacingError("the oracle kept no episode: nothing to export")
    meta = {"oracle": policy.path, "control_hz": 1.0 / policy.task.control_dt,
            "action_scale": policy.task.action_scale, "export": dataclasses.asdict(cfg)}
    return Trajectories(**{k: v.astype(np.float32) if v.dtype.kind == "f" else v
                           for k, v in arrays.items()}, meta=meta)


def main(args) -> None:
    from penspin.cli_support import resolve
    from penspin.student.policy import load_policy

    cfg = resolve(ExportConfig(), args)
    if cfg is None:
        return
    torch.set_num_threads(1)
    policy = load_policy(args.oracle)
    if policy.kind != "oracle":
        raise UserFacingError(f"{args.oracle} is a {policy.kind} checkpoint; export-replay "
                              "plays an oracle's trajectories")
    traj = export(policy, cfg)
    path = traj.save(args.out)
    print(f"wrote {len(traj)} trajectories of {cfg.steps} steps to {path} "
          f"(sim rotation {traj.sim_rotation.mean():.1f} rad on average)")
    if args.pickle_dir:
        paths = traj.write_pickles(args.pickle_dir)
        print(f"wrote {len(paths)} pickles for the original's replay script to {args.pickle_dir}")

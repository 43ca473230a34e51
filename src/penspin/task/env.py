"""The batched pen-spinning task: torch tensors in and out, ``num_envs`` envs per call.

The physics backend only steps MuJoCo; everything PenSpin defines (delta-target actions, noise,
pushes, observations, tactile model, reward, terminations, resets from the grasp cache, domain
randomisation) lives here, written once for every backend. Its tensors live on ``device``, the
backend's torch device, and it reads and writes the backend's arrays as torch views there (see
:mod:`penspin.sim.tensor_state`): stepping never copies to the host.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from penspin.sim import allegro as A
from penspin.sim.cpu_backend import CpuBackend
from penspin.task import grasps
from penspin.task.config import TaskConfig
from penspin.task.rewards import RewardTerms, compute_reward
from penspin.task.rotations import angular_velocity, quat_to_matrix

ROTATION_AXIS = (0.0, 0.0, 1.0)
PALM_ORIGIN = torch.tensor(A.PALM_POS, dtype=torch.float32)


def _uniform(gen: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen, device=gen.device) * (hi - lo) + lo


def pen_template(num_points: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit point-cloud template of a capsule: points = radial * radius + axial * half_length.

    15% of the points on each rounded end, the rest on the side, as in PenSpin's sampler. Drawn
    on ``gen``'s device.
    """
    d = gen.device
    n_cap = max(1, round(0.15 * num_points))
    n_side = num_points - 2 * n_cap
    theta = torch.rand(n_side, generator=gen, device=d) * 2 * torch.pi
    side_r = torch.stack([theta.cos(), theta.sin(), torch.zeros(n_side, device=d)], -1)
    side_a = torch.stack([torch.zeros(n_side, device=d), torch.zeros(n_side, device=d),
                          torch.rand(n_side, generator=gen, device=d) * 2 - 1], -1)
    caps = torch.randn(2 * n_cap, 3, generator=gen, device=d)
    caps = caps / caps.norm(dim=-1, keepdim=True)
    sign = torch.cat([torch.ones(n_cap, device=d), -torch.ones(n_cap, device=d)])
    caps[:, 2] = caps[:, 2].abs() * sign
    cap_a = torch.zeros(2 * n_cap, 3, device=d)
    cap_a[:, 2] = sign
    return torch.cat([side_r, caps]), torch.cat([side_a, cap_a])


def pen_points(radial: torch.Tensor, axial: torch.Tensor, radius: torch.Tensor,
               length: torch.Tensor, quat: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """World point clouds [N, P, 3] of capsule pens from a :func:`pen_template`."""
    half = (length / 2 - radius).clamp_min(1e-4)
    local = radial * radius[:, None, None] + axial * half[:, None, None]
    return local @ quat_to_matrix(quat).transpose(1, 2) + pos[:, None]


class PenSpinEnv:
    """N pen-spinning envs. ``step`` auto-resets finished envs (their new first obs is returned)."""

    num_actions = A.NUM_JOINTS

    def __init__(self, cfg: TaskConfig):
        cfg.check()
        # Torch's intra-op threads would fight the physics threads for the cores
        # (docs/benchmarks.md); task tensors are small, one thread is plenty.
        torch.set_num_threads(1)
        self.cfg = cfg
        self.num_envs = n = cfg.num_envs
        self.max_episode_length = cfg.episode_length
        self.dt = cfg.control_dt
        cache = grasps.load_cache(cfg.grasp_cache, cfg.randomization.pen_scales,
                                  cfg.randomization.pen_length, cfg.randomization.pen_radius)
        if cfg.backend == "warp":
            from penspin.sim.warp_backend import WarpBackend  # imports warp: only when asked for
            self.backend = WarpBackend(n, cfg.substeps, cfg.physics_dt, cfg.device,
                                       graph=cfg.cuda_graph)
        else:
            self.backend = CpuBackend(n, cfg.substeps, cfg.num_threads, cfg.physics_dt)
        self.device = d = self.backend.torch_device
        self.gen = torch.Generator(d).manual_seed(cfg.seed)
        self.cache = {k: torch.from_numpy(v.astype(np.float32)).to(d) for k, v in cache.items()}
        self.layout = self.backend.layout
        self.lower = torch.tensor(A.JOINT_LOWER, dtype=torch.float32, device=d)
        self.upper = torch.tensor(A.JOINT_UPPER, dtype=torch.float32, device=d)
        self.axis = torch.tensor(ROTATION_AXIS, device=d)
        self.pos_target = torch.tensor(cfg.reward.position_target, dtype=torch.float32, device=d)
        self.palm_origin = PALM_ORIGIN.to(d)
        self.template_radial, self.template_axial = pen_template(cfg.obs.num_points, self.gen)

        z = lambda *s: torch.zeros(*s, device=d)  # noqa: E731
        h = cfg.obs.history_len
        self.targets = z(n, 16)
        self.init_q = z(n, 16)
        self.progress = torch.zeros(n, dtype=torch.long, device=d)
        self.pen_pos_prev = z(n, 3)
        self.pen_quat_prev = z(n, 4)
        self.pen_angvel = z(n, 3)
        self.pen_radius = z(n)
        self.pen_length = z(n)
        self.pen_mass = z(n)
        self.pen_friction = z(n)
        self.pen_com = z(n, 3)
        self.pen_restitution = z(n)
        self.pen_scale = z(n)
        self.kp = z(n, 16)
        self.kd = z(n, 16)
        self.frictionloss = z(n, 16)
        self.latency = torch.zeros(n, dtype=torch.long, device=d)
        self.substep_index = torch.arange(cfg.substeps, device=d)
        self.obs_noise_e = z(n, 16)
        self.action_noise_e = z(n, 16)
        self.push_force = z(n, 3)
        self.tactile = z(n, 32)
        self.proprio_hist = z(n, h, 32)
        self.tactile_hist = z(n, h, 32)
        self.ends_hist = z(n, 3, 6)
        self.ep_reward = z(n)
        self.ep_rotation = z(n)
        self.diverged_total = torch.zeros((), dtype=torch.long, device=self.device)
        self.obs_shapes = {"obs": (96,), "priv_info": (61 if cfg.obs.tactile else 29,),
                           "proprio_hist": (h, 32), "fingertip_pos": (12,), "obj_ends": (3, 6)}
        if cfg.obs.point_cloud:
            self.obs_shapes["point_cloud"] = (cfg.obs.num_points, 3)
        if cfg.obs.tactile:
            self.obs_shapes["tactile_hist"] = (h, 32)
        self._obs: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------------------
    def reset(self) -> dict[str, torch.Tensor]:
        self._reset_envs(torch.arange(self.num_envs, device=self.device))
        self._obs = self._observe()
        return self._obs

    def close(self) -> None:
        self.backend.close()

    def step(self, actions: torch.Tensor):
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        if actions.shape != (self.num_envs, self.num_actions):
            raise ValueError(f"actions must have shape {(self.num_envs, self.num_actions)}, "
                             f"got {tuple(actions.shape)}")
        cfg, rc = self.cfg, self.cfg.randomization
        n = self.num_envs
        previous = self.targets
        self.targets = self.next_targets(actions)
        step_noise = self._randn(n, cfg.substeps, 16) * rc.action_noise_step
        target = self.targets[:, None]
        if rc.latency_substeps[1] > 0:
            late = self.substep_index[None] < self.latency[:, None]
            target = torch.where(late[..., None], previous[:, None], target)
        self.backend.ctrl[:] = target + self.action_noise_e[:, None] + step_noise
        self._apply_pushes()

        self.pen_pos_prev = self._pen_pos()
        self.pen_quat_prev = self._pen_quat()
        self.backend.step()
        self.progress += 1

        pen_pos, pen_quat = self._pen_pos(), self._pen_quat()
        self.pen_angvel = angular_velocity(pen_quat, self.pen_quat_prev, self.dt)
        pen_linvel = (pen_pos - self.pen_pos_prev) / self.dt
        self._update_tactile()
        points = self._point_cloud()
        ends = self._pen_ends()
        q = self._joint_pos()
        terms = RewardTerms(
            angvel=self.pen_angvel, linvel=pen_linvel, q=q, init_q=self.init_q,
            torque=self.backend.sensordata[:, self.layout.actuator_force].float(),
            qvel=self.backend.qvel[:, :16].float(),
            points_z=points[..., 2] if points is not None else ends[..., 2],
            pen_pos=pen_pos,
        )
        reward, log = compute_reward(terms, cfg.reward, self.axis, self.pos_target)
        rot_speed = self.pen_angvel @ self.axis

        diverged = self.backend.diverged
        fell = ((pen_pos[:, 2] < cfg.termination.min_pen_height)
                | (ends[..., 2].min(1).values < cfg.termination.min_end_height)
                | (ends[..., 2].max(1).values > cfg.termination.max_end_height)
                | diverged)
        time_out = self.progress >= cfg.episode_length
        done = fell | time_out
        self.diverged_total += diverged.sum()
        log["reward/fall_penalty"] = fell.float().mean()
        if cfg.reward.fall_penalty:
            reward = reward + cfg.reward.fall_penalty * fell.float()
            log["reward/total"] = reward.mean()
        reward = torch.where(diverged, torch.zeros_like(reward), reward)  # garbage state
        self.ep_reward += reward
        self.ep_rotation += rot_speed * self.dt
        info = {"time_outs": time_out & ~fell, "log": log}
        info["log"]["diverged"] = diverged.float().mean()

        self._push_history(q, ends)
        done_ids = done.nonzero().flatten()
        if len(done_ids):
            length = self.progress[done_ids].float()
            info["episode"] = {
                "reward": self.ep_reward[done_ids].clone(),
                "length": length,
                "rotation": self.ep_rotation[done_ids].clone(),
                "rotation_speed": self.ep_rotation[done_ids] / (length * self.dt),
                "fell": fell[done_ids].clone(),
            }
            self._reset_envs(done_ids)
        # Resets moved some pens: only then must the point cloud be recomputed.
        self._obs = self._observe(None if len(done_ids) else points)
        return self._obs, reward, done, info

    def next_targets(self, actions: torch.Tensor) -> torch.Tensor:
        """The absolute joint targets ``actions`` lead to from the current ones."""
        actions = actions.detach().to(self.device, torch.float32).clamp(-1.0, 1.0)
        return torch.minimum(torch.maximum(self.targets + self.cfg.action_scale * actions,
                                           self.lower), self.upper)

    # Resets -----------------------------------------------------------------------------------
    def _reset_envs(self, ids: torch.Tensor) -> None:
        """Start fresh episodes: a cache state, new physical parameters and clean buffers."""
        cfg, rc = self.cfg, self.cfg.randomization
        k = len(ids)
        rows = torch.randint(len(self.cache["q"]), (k,), generator=self.gen, device=self.device)
        q = self.cache["q"][rows]
        self.pen_radius[ids] = self.cache["radius"][rows]
        self.pen_length[ids] = self.cache["length"][rows]
        self.pen_scale[ids] = self.cache["radius"][rows] / grasps.BASE_RADIUS
        self.pen_mass[ids] = _uniform(self.gen, *rc.mass, k)
        self.pen_com[ids] = _uniform(self.gen, -rc.com, rc.com, k, 3)
        self.pen_friction[ids] = self._friction(k)
        self.pen_restitution[ids] = _uniform(self.gen, *rc.restitution, k)
        self.kp[ids] = _uniform(self.gen, *rc.kp, k, 16)
        self.kd[ids] = _uniform(self.gen, *rc.kd, k, 16)
        # Drawn only when asked for, so the training world's random stream is PenSpin's as before.
        if rc.frictionloss[1] > 0:
            self.frictionloss[ids] = _uniform(self.gen, *rc.frictionloss, k, 16)
        if rc.latency_substeps[1] > 0:
            lo, hi = rc.latency_substeps
            self.latency[ids] = torch.randint(lo, hi + 1, (k,), generator=self.gen,
                                              device=self.device)
        self.obs_noise_e[ids] = self._randn(k, 16) * rc.obs_noise_episode
        self.action_noise_e[ids] = self._randn(k, 16) * rc.action_noise_episode
        self._apply_env_params(ids)

        qpos = torch.cat([q, self.cache["pen_pos"][rows], self.cache["pen_quat"][rows]], 1)
        self.backend.set_qpos_qvel(ids, qpos, torch.zeros(k, self.layout.nv, device=self.device))
        self.backend.refresh_sensors(ids)
        target = self.cache["target"][rows]
        self.targets[ids] = target
        self.init_q[ids] = q
        self.progress[ids] = 0
        self.push_force[ids] = 0.0
        self.pen_angvel[ids] = 0.0
        self.ep_reward[ids] = 0.0
        self.ep_rotation[ids] = 0.0
        touch = self.backend.sensordata[ids][:, self.layout.touch].float()
        self.tactile[ids] = (touch >= cfg.obs.tactile_threshold).float()
        q_noisy = self._noisy_q(q, ids)
        self.proprio_hist[ids] = torch.cat([q_noisy, target], 1)[:, None]
        self.tactile_hist[ids] = self.tactile[ids][:, None]
        self.ends_hist[ids] = self._noisy_ends(self._pen_ends()[ids])[:, None]

    def _friction(self, k: int) -> torch.Tensor:
        lo, hi = self.cfg.randomization.friction
        u = _uniform(self.gen, 0.0, 1.0, k)
        if self.cfg.randomization.friction_dist == "arcsine":
            u = torch.sin(0.5 * torch.pi * u) ** 2
        return lo + (hi - lo) * u

    def _apply_env_params(self, ids: torch.Tensor) -> None:
        damp = 1.0 - 0.7 * self.pen_restitution[ids]  # MuJoCo analogue of restitution
        self.backend.set_pen(ids, self.pen_radius[ids], self.pen_length[ids], self.pen_mass[ids],
                             self.pen_com[ids], self.pen_friction[ids], damp)
        self.backend.set_pd_gains(ids, self.kp[ids], self.kd[ids])
        if self.cfg.randomization.frictionloss[1] > 0:
            self.backend.set_joint_friction(ids, self.frictionloss[ids])

    # Physics inputs ---------------------------------------------------------------------------
    def _apply_pushes(self) -> None:
        """Random pushes on the pen in a few random substeps, decaying between draws."""
        rc = self.cfg.randomization
        qfrc = self.backend.qfrc
        qfrc[:] = 0.0
        if rc.force_scale <= 0 or rc.force_prob <= 0:
            return
        decay = rc.force_decay ** (self.cfg.physics_dt / rc.force_decay_interval)
        lin = slice(self.layout.pen_qvel.start, self.layout.pen_qvel.start + 3)
        subs = torch.randint(self.cfg.substeps, (rc.force_substeps,), generator=self.gen,
                             device=self.device)
        for s in subs.tolist():
            self.push_force *= decay
            new = self._rand(self.num_envs) < rc.force_prob
            fresh = self._randn(self.num_envs, 3)
            fresh *= (self.pen_mass * rc.force_scale)[:, None]
            self.push_force = torch.where(new[:, None], fresh, self.push_force)
            qfrc[:, s, lin] = self.push_force

    # Random draws (on the task's device) ------------------------------------------------------
    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.gen, device=self.device)

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen, device=self.device)

    # State readers ----------------------------------------------------------------------------
    @staticmethod
    def _copy(view: torch.Tensor) -> torch.Tensor:
        """A float32 copy of a backend view (the view changes with the next step)."""
        return view.to(torch.float32, copy=True)

    def _pen_pos(self) -> torch.Tensor:
        return self._copy(self.backend.qpos[:, self.layout.pen_qpos][:, :3])

    def _pen_quat(self) -> torch.Tensor:
        return self._copy(self.backend.qpos[:, self.layout.pen_qpos][:, 3:])

    def _joint_pos(self) -> torch.Tensor:
        return self._copy(self.backend.qpos[:, :16])

    def _fingertips(self) -> torch.Tensor:
        return self._copy(self.backend.sensordata[:, self.layout.tip_pos])

    def _noisy_q(self, q: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        rc = self.cfg.randomization
        e = self.obs_noise_e if ids is None else self.obs_noise_e[ids]
        return q + self._randn(*q.shape) * rc.obs_noise_step + e

    def _pen_axis(self) -> torch.Tensor:
        return quat_to_matrix(self._pen_quat())[..., 2]

    def _pen_ends(self) -> torch.Tensor:
        """World positions of both pen ends, (N, 2, 3), from each env's own length."""
        offset = self._pen_axis() * (self.pen_length / 2)[:, None]
        pos = self._pen_pos()
        return torch.stack([pos + offset, pos - offset], 1)

    def _noisy_ends(self, ends: torch.Tensor) -> torch.Tensor:
        """Pen ends relative to the palm with a camera's uniform noise, flattened to 6."""
        noise = self.cfg.obs.ends_noise
        noisy = ends - self.palm_origin + _uniform(self.gen, -noise, noise, *ends.shape)
        return noisy.reshape(len(noisy), 6)

    def _point_cloud(self) -> torch.Tensor | None:
        if not self.cfg.obs.point_cloud:
            return None
        return pen_points(self.template_radial, self.template_axial, self.pen_radius,
                          self.pen_length, self._pen_quat(), self._pen_pos())

    def _update_tactile(self) -> None:
        """Binary taxels with latency (hold last reading) and dropout."""
        oc = self.cfg.obs
        touch = self.backend.sensordata[:, self.layout.touch].float()
        fresh = (touch >= oc.tactile_threshold).float()
        hold = self._rand(*fresh.shape) < oc.tactile_latency
        reading = torch.where(hold, self.tactile, fresh)
        drop = self._rand(*fresh.shape) < oc.tactile_dropout
        self.tactile = torch.where(drop, torch.zeros_like(reading), reading)

    def _push_history(self, q: torch.Tensor, ends: torch.Tensor) -> None:
        entry = torch.cat([self._noisy_q(q), self.targets], 1)
        self.proprio_hist = torch.cat([self.proprio_hist[:, 1:], entry[:, None]], 1)
        self.tactile_hist = torch.cat([self.tactile_hist[:, 1:], self.tactile[:, None]], 1)
        self.ends_hist = torch.cat([self.ends_hist[:, 1:], self._noisy_ends(ends)[:, None]], 1)

    def _observe(self, points: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every observation group, all from the current state (never the previous episode).

        ``points``: this state's point cloud if the caller already has it.
        """
        tips = self._fingertips()
        priv = [self._pen_pos(), self.pen_scale[:, None], self.pen_mass[:, None],
                self.pen_friction[:, None], self.pen_com, self._pen_quat(), self.pen_angvel, tips,
                self.pen_restitution[:, None]]
        if self.cfg.obs.tactile:
            priv.append(self.tactile)
        # Copies, so observations a learner keeps are not changed by the next step's resets.
        obs = {
            "obs": self.proprio_hist[:, -3:].reshape(self.num_envs, 96).clone(),
            "priv_info": torch.cat(priv, 1),
            "proprio_hist": self.proprio_hist.clone(),
            "fingertip_pos": tips,
            "obj_ends": self.ends_hist.clone(),
        }
        if self.cfg.obs.point_cloud:
            obs["point_cloud"] = self._point_cloud() if points is None else points
        if self.cfg.obs.tactile:
            obs["tactile_hist"] = self.tactile_hist.clone()
        return obs

    # Exact resume -----------------------------------------------------------------------------
    _STATE_TENSORS = ("targets", "init_q", "progress", "pen_pos_prev", "pen_quat_prev",
                      "pen_angvel", "pen_radius", "pen_length", "pen_mass", "pen_friction",
                      "pen_com", "pen_restitution", "pen_scale", "kp", "kd", "frictionloss",
                      "latency", "obs_noise_e",
                      "action_noise_e", "push_force", "tactile", "proprio_hist", "tactile_hist",
                      "ends_hist", "ep_reward", "ep_rotation")

    def get_state(self) -> dict:
        """Host copies; the physics in float64 on every backend, so it moves between backends (the
        random generator's state only between envs on the same kind of device)."""
        state = {k: getattr(self, k).cpu().clone() for k in self._STATE_TENSORS}
        state["physics"], state["sensors"] = self.backend.get_physics()
        state["rng"] = self.gen.get_state()
        state["rng_device"] = self.device.type
        state["diverged_total"] = int(self.diverged_total)
        return state

    def set_state(self, state: dict) -> None:
        for k in self._STATE_TENSORS:
            if k in state:  # states saved before a tensor existed keep its zero default
                setattr(self, k, state[k].to(self.device, copy=True))
        self.backend.set_physics(state["physics"], state["sensors"])
        saved_on = state.get("rng_device", "cpu")  # states from before the key: CPU envs
        if saved_on == self.device.type:
            self.gen.set_state(state["rng"])
        else:
            # CPU and CUDA generators keep different kinds of state: one cannot load the other's.
            warnings.warn(f"the env's random generator was saved on {saved_on} and this env runs "
                          f"on {self.device.type}: reseeding it; physics and buffers resume "
                          "exactly, the random draws from here on differ", stacklevel=2)
            self.gen.manual_seed(self.cfg.seed + int(state["progress"].sum()))
        self.diverged_total.fill_(int(state["diverged_total"]))
        self._apply_env_params(torch.arange(self.num_envs, device=self.device))
        self._obs = self._observe()

    @property
    def observations(self) -> dict[str, torch.Tensor]:
        if self._obs is None:
            raise RuntimeError("call reset() first")
        return self._obs

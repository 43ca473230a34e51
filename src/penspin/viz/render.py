"""Headless MP4 of one env driven by a policy, plus the numbers that say how well it spun.

Frames come from ``penspin.sim.frames``, which selects a headless GL backend before mujoco loads;
import this module (or that one) first in processes that render.
"""

from __future__ import annotations

# Imported first: it chooses a headless GL backend before anything imports mujoco.
from penspin.sim.frames import EnvFrames

# isort: split
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from penspin.config import ConfigError
from penspin.task.config import TaskConfig
from penspin.task.env import PenSpinEnv

Policy = Callable[[dict], "torch.Tensor | np.ndarray"]

RANDOM_ACTION_SCALE = 0.3


class RandomPolicy:
    """Uniform actions in [-0.3, 0.3]: shows the scene and the pipeline before any training."""

    def __init__(self, num_envs: int, seed: int = 0, scale: float = RANDOM_ACTION_SCALE):
        self.num_envs = num_envs
        self.scale = scale
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, obs: dict) -> torch.Tensor:
        return (torch.rand(self.num_envs, PenSpinEnv.num_actions, generator=self.gen) * 2 - 1) \
            * self.scale


def load_checkpoint_policy(checkpoint: str) -> tuple[Policy, TaskConfig | None]:
    """The checkpoint's policy and the task settings it was trained with (when it records them)."""
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    try:
        from penspin.student.policy import load_policy
    except ImportError as exc:
        raise ConfigError(
            f"cannot run checkpoint {checkpoint}: the policy loader "
            f"(penspin.student.policy) is unavailable: {exc}"
        ) from exc
    loaded = load_policy(checkpoint)
    return getattr(loaded, "act", loaded), getattr(loaded, "task", None)


def act(policy: Policy, obs: dict, num_envs: int = 1) -> torch.Tensor:
    """Call a policy without autograd and give its actions the env's shape and dtype."""
    with torch.no_grad():
        actions = policy(obs)
    return torch.as_tensor(actions, dtype=torch.float32).reshape(num_envs, PenSpinEnv.num_actions)


class SpinStats:
    """Rotation, drops and time held of env 0 across the auto-resets of a run."""

    def __init__(self, dt: float):
        self.dt = dt
        self.steps = 0
        self.drops = 0
        self.first_drop_step: int | None = None
        self._finished_rotation = 0.0

    def update(self, info: dict) -> None:
        self.steps += 1
        episode = info.get("episode")
        if episode is None:
            return
        self._finished_rotation += float(episode["rotation"].sum())
        drops = int(episode["fell"].sum())
        if drops and self.first_drop_step is None:
            self.first_drop_step = self.steps
        self.drops += drops

    def rotation(self, env: PenSpinEnv) -> float:
        """Total signed rotation about +z (rad), the running episode included."""
        return self._finished_rotation + float(env.ep_rotation[0])

    def summary(self, env: PenSpinEnv) -> dict:
        seconds = self.steps * self.dt
        rotation = self.rotation(env)
        held = self.first_drop_step if self.first_drop_step is not None else self.steps
        return {
            "seconds": seconds,
            "steps": self.steps,
            "rotation_rad": rotation,
            "rotation_turns": rotation / (2 * math.pi),
            "rotation_speed": rotation / seconds if seconds else 0.0,
            "time_held_s": held * self.dt,  # until the first drop, or the whole run
            "drops": self.drops,
        }

    def overlay(self, env: PenSpinEnv) -> str:
        seconds = max(self.steps * self.dt, 1e-9)
        rotation = self.rotation(env)
        return (f"t {self.steps * self.dt:5.2f} s   rotation {rotation / (2 * math.pi):+.2f} turns"
                f"   {rotation / seconds:+.2f} rad/s   drops {self.drops}")


def format_summary(result: dict) -> str:
    return "\n".join([
        f"rotation about +z: {result['rotation_rad']:+.2f} rad ({result['rotation_turns']:+.2f} "
        f"turns) in {result['seconds']:.1f} s",
        f"mean rotation speed: {result['rotation_speed']:+.3f} rad/s",
        f"time held before the first drop: {result['time_held_s']:.2f} s",
        f"drops: {result['drops']}",
    ])


class FrameRenderer:
    """Frames of env 0 of a PenSpinEnv, taxels lit by its touch reading, with a caption."""

    def __init__(self, env: PenSpinEnv, camera: str = "front", width: int = 640,
                 height: int = 480):
        self.env = env
        self.frames = EnvFrames(env.backend, 0, camera, width, height)
        self._font = None

    def frame(self, text: str = "") -> np.ndarray:
        """An (H, W, 3) uint8 image of the env's current state."""
        image = self.frames.frame(self.env.tactile[0].cpu().numpy())
        return self._draw_text(image, text) if text else image

    def _draw_text(self, image: np.ndarray, text: str) -> np.ndarray:
        from PIL import Image, ImageDraw, ImageFont  # Pillow ships with matplotlib

        if self._font is None:
            self._font = ImageFont.load_default(size=max(12, image.shape[0] // 32))
        pil = Image.fromarray(image)
        draw = ImageDraw.Draw(pil)
        box = draw.textbbox((8, 6), text, font=self._font)
        draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=(0, 0, 0))
        draw.text((8, 6), text, fill=(255, 255, 255), font=self._font)
        return np.asarray(pil)

    def close(self) -> None:
        self.frames.close()


def render_video(task_cfg: TaskConfig, policy: Policy | None = None,
                 out: str | Path = "penspin.mp4", seconds: float = 10.0, camera: str = "front",
                 width: int = 640, height: int = 480) -> dict:
    """Run one env for ``seconds`` with ``policy`` (random if None) and write an MP4.

    One frame per control step (20 fps at the default 20 Hz control). Odd sizes are rounded down
    to even, as H.264 in yuv420p needs. Returns the summary numbers plus ``frames`` and ``out``.
    """
    import imageio.v2 as imageio
    from tqdm import tqdm

    if seconds <= 0:
        raise ConfigError(f"seconds must be positive, got {seconds}")
    width, height = width - width % 2, height - height % 2
    if width < 2 or height < 2:
        raise ConfigError(f"video size must be at least 2x2, got {width}x{height}")
    env = PenSpinEnv(dataclasses.replace(task_cfg, num_envs=1, num_threads=1))
    if policy is None:
        policy = RandomPolicy(1, task_cfg.seed)
    steps = max(1, round(seconds / env.dt))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix or '.mp4'}")
    renderer = None
    try:
        renderer = FrameRenderer(env, camera, width, height)
        stats = SpinStats(env.dt)
        obs = env.reset()
        with imageio.get_writer(tmp, format="FFMPEG", fps=1.0 / env.dt, codec="libx264",
                                pixelformat="yuv420p", macro_block_size=2,
                                ffmpeg_log_level="error") as writer:
            for _ in tqdm(range(steps), desc="render", unit="frame"):
                obs, _, _, info = env.step(act(policy, obs))
                stats.update(info)
                writer.append_data(renderer.frame(stats.overlay(env)))
        tmp.replace(out)
    finally:
        if renderer is not None:
            renderer.close()
        env.close()
        tmp.unlink(missing_ok=True)
    return {**stats.summary(env), "frames": steps, "out": str(out)}


def policy_and_config(args) -> tuple[Policy, TaskConfig] | None:
    """What ``render`` and ``view`` run: the checkpoint's policy (random without one) and a
    one-env TaskConfig: the checkpoint's task, or the default, plus the command's overrides.

    None after ``--keys`` (the keys were printed).
    """
    from penspin.cli_support import resolve

    policy, base = load_checkpoint_policy(args.checkpoint) if args.checkpoint else (None, None)
    cfg = resolve(dataclasses.replace(base or TaskConfig(), num_envs=1, num_threads=1), args)
    if cfg is None:
        return None
    if cfg.num_envs != 1:
        raise ConfigError(f"render and view show a single env; num_envs must be 1, "
                          f"got {cfg.num_envs}")
    return (RandomPolicy(1, cfg.seed) if policy is None else policy), cfg


def main(args) -> None:
    """``penspin render``: resolve the overrides, run the policy, write the video, print numbers."""
    resolved = policy_and_config(args)
    if resolved is None:
        return
    policy, cfg = resolved
    result = render_video(cfg, policy, args.out, args.seconds, args.camera, args.width,
                          args.height)
    print(format_summary(result))
    print(f"wrote {result['out']} ({result['frames']} frames at {1 / cfg.control_dt:g} fps)")

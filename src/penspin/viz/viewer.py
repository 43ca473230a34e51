"""``penspin view``: MuJoCo's interactive viewer on one env, stepped in real time by a policy.

The viewer is GLFW and needs a display; the check comes first so a headless machine gets a
one-line pointer to ``penspin render`` instead of a GLFW traceback.
"""

from __future__ import annotations

import os
import sys
import time

NO_DISPLAY = "penspin view needs a display; use `penspin render` on headless machines"


def has_display() -> bool:
    """macOS always has one (run under ``mjpython``); elsewhere X11 or Wayland must be set."""
    return sys.platform == "darwin" or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(args) -> None:
    """Step one env at the control rate until the window closes, then print the spin numbers."""
    if not has_display() and not getattr(args, "keys", False):
        raise SystemExit(NO_DISPLAY)
    # mujoco first: render's headless GL choice must not apply to this windowed process.
    import mujoco
    import mujoco.viewer

    from penspin.sim.frames import paint_taxels, style_model
    from penspin.task.env import PenSpinEnv
    from penspin.viz.render import SpinStats, act, format_summary, policy_and_config

    resolved = policy_and_config(args)
    if resolved is None:
        return
    policy, cfg = resolved
    env = PenSpinEnv(cfg)
    model = env.backend.models[0]
    style_model(model)
    data = mujoco.MjData(model)
    stats = SpinStats(env.dt)
    obs = env.reset()
    try:
        with mujoco.viewer.launch_passive(model, data) as viewer:
            viewer.opt.sitegroup[4] = 1  # taxels
            deadline = time.perf_counter()
            while viewer.is_running():
                obs, _, _, info = env.step(act(policy, obs))
                stats.update(info)
                with viewer.lock():
                    mujoco.mj_setState(model, data, env.backend.host_state(0),
                                       mujoco.mjtState.mjSTATE_FULLPHYSICS)
                    mujoco.mj_forward(model, data)
                    paint_taxels(model, env.layout.taxel_sites, env.tactile[0].cpu().numpy())
                viewer.sync()
                # Real time: wait out the rest of the control step; never bank lost time.
                deadline = max(deadline + env.dt, time.perf_counter())
                time.sleep(max(0.0, deadline - time.perf_counter()))
    finally:
        env.close()
    if stats.steps:
        print(format_summary(stats.summary(env)))

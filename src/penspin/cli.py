"""``penspin`` command line: one subcommand per pipeline step.

Every subcommand takes ``key=value`` overrides of its dataclass config (``penspin <cmd> --keys``
lists them). Heavy modules are imported inside the handlers so ``penspin --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from penspin.config import ConfigError, UserFacingError


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. env.num_envs=64 (see --keys)")
    p.add_argument("--keys", action="store_true",
                   help="list every config key, its default and its doc")


def _add_robot(p: argparse.ArgumentParser) -> None:
    p.add_argument("--robot", default="proxy", choices=("proxy", "ros2"),
                   help="proxy: the proxy-real MuJoCo world; ros2: a real Allegro hand")


# Commands whose whole work is their module's ``main(args)``; imported only when run.
MAINS = {
    "view": "penspin.viz.viewer",
    "render": "penspin.viz.render",
    "train-oracle": "penspin.oracle.run",
    "train-student": "penspin.student.run_distill",
    "train-student-rl": "penspin.student.run_rl",
    "export-student": "penspin.student.export",
    "export-replay": "penspin.replay.trajectories",
    "replay": "penspin.replay.replay",
    "sim-hand": "penspin.robot.sim_hand",
    "finetune": "penspin.finetune.run",
    "excite": "penspin.calibration.excite",
    "calibrate": "penspin.calibration.run",
    "plot": "penspin.viz.curves",
}
GL_FIRST = {"replay"}  # headless GL must load before mujoco (the check videos)


def _run_main(args) -> None:
    if args.command in GL_FIRST:
        import penspin.sim.gl  # noqa: F401
    importlib.import_module(MAINS[args.command]).main(args)


def _cmd_grasps(args) -> None:
    from penspin.cli_support import resolve
    from penspin.task.grasps import GraspConfig, default_cache_path, generate

    cfg = resolve(GraspConfig(), args)
    if cfg is None:
        return
    out = args.out or default_cache_path()
    cache = generate(cfg, out)
    print(f"wrote {len(cache['q'])} grasps to {out}")


def _cmd_eval(args) -> None:
    import penspin.sim.gl  # noqa: F401  (headless GL before mujoco loads: camera students)
    from penspin.evaluation import evaluate, robot_eval

    # ``--checkpoint A.pt B.pt key=value``: overrides after the list land in it; move them.
    args.overrides = [*args.overrides, *(c for c in args.checkpoint if "=" in c)]
    args.checkpoint = [c for c in args.checkpoint if "=" not in c]
    (robot_eval if getattr(args, "robot", "") else evaluate).main(args)


def _cmd_release(args) -> None:
    from penspin.rl.checkpoint import release_copy

    out = release_copy(args.src, args.dst)
    print(f"wrote {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="penspin",
        description="In-hand pen spinning with an Allegro hand on MuJoCo (PenSpin, CoRL 2024).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("grasps", help="generate the grasp cache episodes start from")
    p.add_argument("--out", default="", help="output .npz (default: the packaged cache)")
    _add_overrides(p)
    p.set_defaults(func=_cmd_grasps)

    p = sub.add_parser("view", help="open MuJoCo's viewer on the scene (needs a display)")
    p.add_argument("--checkpoint", default="", help="policy to run (default: random actions)")
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("render", help="write an MP4 of a policy spinning the pen (headless)")
    p.add_argument("--checkpoint", default="", help="policy .pt (default: random actions)")
    p.add_argument("--out", default="penspin.mp4", help="output video path")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the video")
    p.add_argument("--camera", default="front", choices=("front", "top", "close"))
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("train-oracle", help="train the privileged oracle with PPO")
    p.add_argument("--run-dir", default="", help="folder for logs and checkpoints (default: "
                   "runs/oracle; with --resume, the checkpoint's own folder)")
    p.add_argument("--resume", default="", help="checkpoint to continue from (e.g. RUN/last.pt)")
    p.add_argument("--calibration", default="", help="a penspin calibrate JSON: centre the "
                   "task's dynamics randomisation on it (new runs; a resumed run keeps its own)")
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("train-student",
                       help="distil the oracle into the proprioceptive student (oracle drives)")
    p.add_argument("--oracle", default="", help="oracle .pt whose rollouts teach the student")
    p.add_argument("--run-dir", default="", help="folder for logs and checkpoints (default: "
                   "runs/student; with --resume, the checkpoint's own folder)")
    p.add_argument("--resume", default="", help="student checkpoint to continue from")
    p.add_argument("--dagger", action="store_true",
                   help="baseline: the student drives and the oracle only labels")
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("train-student-rl",
                       help="finetune a distilled student with PPO, the oracle as its critic")
    p.add_argument("--student", default="", help="distilled student .pt to start from")
    p.add_argument("--oracle", default="", help="oracle .pt whose network starts the critic "
                   "(default: the student checkpoint's own teacher)")
    p.add_argument("--run-dir", default="", help="folder for logs and checkpoints (default: "
                   "runs/student-rl; with --resume, the checkpoint's own folder)")
    p.add_argument("--resume", default="", help="train-student-rl checkpoint to continue from")
    p.add_argument("--calibration", default="", help="a penspin calibrate JSON: centre the "
                   "task's dynamics randomisation on it (new runs; a resumed run keeps its own)")
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("export-student",
                       help="write a student for a robot computer (safetensors + JSON)")
    p.add_argument("--checkpoint", required=True, help="student .pt")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_run_main)

    p = sub.add_parser("eval", help="measure a checkpoint: time to fall, survival, rotation speed")
    p.add_argument("--checkpoint", nargs="+", default=[],
                   help="oracle or student .pt; several are compared on the same episodes")
    p.add_argument("--episodes", type=int, default=256, help="number of 20 s episodes")
    p.add_argument("--out", default="", help="write the metrics here as JSON")
    p.add_argument("--robot", default="", choices=("", "proxy", "ros2"),
                   help="evaluate on a robot backend instead of the training simulation")
    p.add_argument("--trajectories", default="",
                   help="with --robot: trials start from these trajectories' start states; "
                        "'replay' as a checkpoint plays them open loop")
    _add_overrides(p)
    p.set_defaults(func=_cmd_eval)
    p = sub.add_parser("export-replay",
                       help="step 3a: save oracle trajectories to replay open loop on a robot")
    p.add_argument("--oracle", default="", help="oracle .pt (required)")
    p.add_argument("--out", default="", help="trajectory file (.npz) (required)")
    p.add_argument("--pickle-dir", default="",
                   help="also write {'position': [T, 16]} pickles for the original's replay")
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("replay", help="step 3b: replay trajectories on a robot, keep successes "
                                      "in real_data.h5")
    _add_robot(p)
    p.add_argument("--trajectories", default="",
                   help="file from penspin export-replay (required)")
    p.add_argument("--out-dir", default="real_data", help="folder for real_data.h5, videos, log")
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("sim-hand", help="serve the proxy-real hand over ROS 2 as an Allegro "
                                        "driver (a digital twin for --robot ros2)")
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("finetune", help="step 4: train a student further on real_data.h5")
    p.add_argument("--real-dataset-folder", default="",
                   help="folder with real_data.h5 (required)")
    p.add_argument("--checkpoint-path", default="",
                   help="student .pt to start from (empty: a fresh student, 'no pretrain')")
    p.add_argument("--run-dir", default="runs/finetune", help="folder for logs and checkpoints")
    p.add_argument("--trajectories", default="",
                   help="export-replay file whose proxy trials score checkpoints "
                        "(train.select=proxy)")
    p.add_argument("--num-epochs", type=int, default=None, help="= train.epochs")
    p.add_argument("--real-batch-size", type=int, default=None, help="= train.batch_size")
    p.add_argument("--lr", type=float, default=None, help="= train.learning_rate")
    p.add_argument("--val-ratio", type=float, default=None, help="= train.val_ratio")
    p.add_argument("--seed", type=int, default=None, help="= train.seed")
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("excite", help="record chirps and steps on every joint (pen absent) "
                                      "for penspin calibrate")
    _add_robot(p)
    p.add_argument("--out-dir", default="excite_data", help="folder for excite_data.h5 and log")
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("calibrate", help="fit the simulated hand to a real hand's logs "
                                         "(real-to-sim): a JSON file for --calibration")
    p.add_argument("--real-dataset-folder", default="",
                   help="folder (or .h5) with excite_data.h5 (preferred) or real_data.h5")
    p.add_argument("--out", default="calibration.json", help="output JSON (and a .png of traces)")
    _add_overrides(p)
    p.set_defaults(func=_run_main)

    p = sub.add_parser("release", help="copy a checkpoint without optimiser/RNG/env state")
    p.add_argument("src", help="a training checkpoint, e.g. runs/oracle/best.pt")
    p.add_argument("dst", help="where to write the slim copy")
    p.set_defaults(func=_cmd_release)

    p = sub.add_parser("plot", help="plot a run's learning curves to a PNG")
    p.add_argument("run_dir", help="a training run folder (holds tb/)")
    p.add_argument("--out", default="curves.png", help="output PNG ('' for none)")
    p.add_argument("--title", default="", help="figure title (default: the run folder)")
    p.add_argument("--csv", default="", help="also write every scalar, binned, to this CSV")
    p.add_argument("--bin-steps", type=float, default=1e5, help="CSV bin width in env steps")
    p.set_defaults(func=_run_main)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    # Overrides may come before or after options: argparse leaves the later ones unparsed.
    args, extra = parser.parse_known_args(argv)
    takes = hasattr(args, "overrides")
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not takes]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    # Options a command needs to run, but not to list its keys with --keys.
    needed = {"eval": ("checkpoint",), "export-replay": ("oracle", "out"),
              "replay": ("trajectories",), "finetune": ("real_dataset_folder",),
              "calibrate": ("real_dataset_folder",)}
    missing = [f"--{name.replace('_', '-')}" for name in needed.get(args.command, ())
               if not getattr(args, name)]
    if missing and not getattr(args, "keys", False):
        print(f"penspin {args.command}: error: the following arguments are required: "
              f"{', '.join(missing)}", file=sys.stderr)
        raise SystemExit(2)
    try:
        args.func(args)
    except (ConfigError, FileNotFoundError, UserFacingError) as exc:
        print(f"penspin {args.command}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # a rank under torchrun
        from penspin.rl.distributed import leave

        leave()


if __name__ == "__main__":
    main()

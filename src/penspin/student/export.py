"""``penspin export-student``: a student checkpoint as ``student.safetensors`` + ``student.json``.

The pair is everything a robot computer needs to run the student with :mod:`penspin.deploy`
(torch + safetensors only): weights and normaliser statistics in the safetensors file; input
mode, layer sizes, action scale, control rate, joint order and limits, and the fingertip
kinematic chain in the JSON. No pickle, so loading a file cannot run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from penspin.config import from_dict
from penspin.rl.checkpoint import load_checkpoint, model_from_payload
from penspin.sim import allegro as A
from penspin.student.network import StudentActorCritic
from penspin.task.config import TaskConfig
from penspin.task.kinematics import chain_description

EXPORT_FORMAT = "penspin-student"
EXPORT_VERSION = 1


def _replace_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_student(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write ``out_dir/student.safetensors`` and ``out_dir/student.json``; returns ``out_dir``."""
    payload = load_checkpoint(checkpoint, expected_kind="student")
    model = model_from_payload(StudentActorCritic, payload)
    env = payload.get("config", {}).get("env")
    task = from_dict(TaskConfig, env) if env is not None else TaskConfig()
    # Sample counts only matter to further training; inference needs mean and var.
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()
               if not k.endswith(".count")}
    meta = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "source_checkpoint": str(checkpoint),
        "model_args": payload["model_args"],
        "inputs": {k: list(v) for k, v in model.input_shapes.items()},
        "normalizer": {"epsilon": model.obs_rms.epsilon, "clip": model.obs_rms.clip},
        "action_scale": task.action_scale,
        "control_hz": 1.0 / task.control_dt,
        "joint_order": "index, thumb, middle, ring (4 joints each, base to tip); the driver's "
                       "joint i is joint hardware_order[i]",
        "joint_names": list(A.JOINT_NAMES),
        "hardware_order": A.HARDWARE_ORDER.tolist(),
        "joint_lower": A.JOINT_LOWER.tolist(),
        "joint_upper": A.JOINT_UPPER.tolist(),
        "kinematics": chain_description(),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _replace_atomically(out / "student.safetensors",
                        lambda p: save_file(tensors, str(p), metadata={"format": EXPORT_FORMAT}))
    _replace_atomically(out / "student.json",
                        lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return out


def main(args) -> None:
    out = export_student(args.checkpoint, args.out)
    print(f"wrote {out / 'student.safetensors'} and {out / 'student.json'}; "
          "load with penspin.deploy.DeployedStudent.load")

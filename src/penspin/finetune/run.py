"""``penspin finetune``: train a student further on successful replays (the paper's step 4).

From a student checkpoint (or, for the "no pretrain" baseline, a fresh student), L1 on clamped
actions over sliding windows of the demonstrations (optionally mixed with simulated oracle
samples), a validation split by demonstration (real windows only), Adam,
TensorBoard, and checkpoints that ``penspin eval`` and ``penspin export-student`` accept. The
original's flags (``--num-epochs``, ``--real-batch-size``, ``--lr``, ``--val-ratio``,
``--seed``) map onto ``train.*`` keys.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from penspin.config import ConfigError, from_dict, to_dict
from penspin.finetune.windows import build_windows, split
from penspin.learning.checkpoint import load_checkpoint, model_from_payload, save_checkpoint
from penspin.learning.run_student import student_env
from penspin.learning.runner import seed_everything
from penspin.learning.student import StudentActorCritic, StudentNetworkConfig
from penspin.replay.dataset import load_demos
from penspin.task.config import TaskConfig


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 30  # passes over the training windows (original: 3000 of ~1 batch each)
    batch_size: int = 512  # the original script's --real-batch-size
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    val_ratio: float = 0.1  # share of demonstrations held out
    seed: int = 0
    max_demos: int = 0  # use only the first N demos of the file (0: all)
    grad_norm: float = 1.0
    fk_noise: float = 0.002  # m, as in distillation
    renormalize: bool = False  # refit the obs/fingertip normalisers on the real data
    pad_start: bool = True  # windows of a trial's first steps too (false: the original's)
    sim_oracle: str = ""  # an oracle .pt: mix its simulated samples into every batch
    sim_samples: int = 20000  # how many to collect once, before training
    sim_ratio: float = 0.5  # share of each batch that is simulated
    input_mode: str = "proprio"  # for a fresh student (no --checkpoint-path)
    progress: bool = True

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ConfigError("train.epochs, train.batch_size must be >= 1, learning_rate > 0")
        if not 0.0 <= self.val_ratio < 1.0:
            raise ConfigError(f"train.val_ratio must be in [0, 1), got {self.val_ratio}")
        if not 0.0 <= self.sim_ratio < 1.0 or self.sim_samples < 1:
            raise ConfigError("train.sim_ratio must be in [0, 1) and train.sim_samples >= 1")


@dataclass(frozen=True)
class FinetuneRunConfig:
    train: FinetuneConfig = field(default_factory=FinetuneConfig)


def load_start(path: str, cfg: FinetuneConfig) -> tuple[StudentActorCritic, TaskConfig, dict]:
    """The student to start from and its task config; a fresh one without a path."""
    if not path:
        model = StudentActorCritic.from_obs_shapes(
            {"obs": (96,), "proprio_hist": (30, 32), "tactile_hist": (30, 32),
             "obj_ends": (3, 6)}, 16, cfg.input_mode,
            StudentNetworkConfig())
        return model, student_env(TaskConfig()), {}
    payload = load_checkpoint(path, expected_kind="student")
    model = model_from_payload(StudentActorCritic, payload)
    env = payload.get("config", {}).get("env")
    return model, from_dict(TaskConfig, env) if env is not None else TaskConfig(), payload


class Finetuner:
    def __init__(self, model: StudentActorCritic, task: TaskConfig, cfg: FinetuneConfig,
                 demos, run_dir: Path, source: str):
        cfg.check()
        seed_everything(cfg.seed)
        self.model, self.task, self.cfg = model, task, cfg
        self.windows = build_windows(demos, task.action_scale,
                                     model.input_shapes["proprio_hist"][0], cfg.pad_start)
        if model.use_ends and self.windows.ends is None:
            raise ConfigError("this student reads pen ends, but the demos have no obj_ends "
                              "(replay with replay.camera=true and use real_data_full.h5)")
        if model.use_tactile and self.windows.touch is None:
            raise ConfigError("this student reads touch, but the demos have no touch (replay on "
                              "a hand with touch sensors, such as the proxy)")
        self.train_idx, self.val_idx = split(self.windows, cfg.val_ratio, cfg.seed)
        self.fresh = not source
        if self.fresh or cfg.renormalize:
            for rms in model.normalizers():
                rms.count.zero_()  # the first update then replaces mean and var outright
            inputs, _ = self.windows.batch(self.train_idx)
            model.update_normalizers(inputs)
        self.sim = None
        if cfg.sim_oracle:
            from penspin.finetune.sim_data import oracle_samples

            self.sim = oracle_samples(cfg.sim_oracle, task, list(model.input_shapes),
                                      cfg.sim_samples, cfg.seed)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate,
                                          weight_decay=cfg.weight_decay)
        self.run_dir = run_dir
        self.source = source
        self.best = math.inf

    def loss(self, idx: torch.Tensor, train: bool) -> torch.Tensor:
        inputs, labels = self.windows.batch(idx)
        if train and self.sim is not None:
            ratio = self.cfg.sim_ratio
            pick = torch.randint(len(self.sim[1]), (round(len(idx) * ratio / (1 - ratio)),))
            inputs = {k: torch.cat([v, self.sim[0][k][pick]]) for k, v in inputs.items()}
            labels = torch.cat([labels, self.sim[1][pick]])
        mu = self.model(inputs, fk_noise=self.cfg.fk_noise if train else 0.0)
        return (mu.clamp(-1.0, 1.0) - labels).abs().sum(-1).mean()

    @torch.no_grad()
    def validate(self) -> float:
        if not len(self.val_idx):
            return math.nan
        self.model.eval()
        losses = [self.loss(chunk, False).item() * len(chunk)
                  for chunk in self.val_idx.split(4096)]
        return sum(losses) / len(self.val_idx)

    def train(self, writer=None) -> dict:
        cfg = self.cfg
        history = {"train": [], "val": [self.validate()]}
        # The starting point competes too: best.pt is never worse on validation than the start.
        if not math.isnan(history["val"][0]):
            self.best = history["val"][0]
            self.save(self.run_dir / "best.pt", 0, history)
        bar = tqdm(range(cfg.epochs), desc="finetune", unit="epoch", disable=not cfg.progress)
        for epoch in bar:
            self.model.train()
            perm = self.train_idx[torch.randperm(len(self.train_idx))]
            total = 0.0
            for chunk in perm.split(cfg.batch_size):
                loss = self.loss(chunk, True)
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_norm)
                self.optimizer.step()
                total += loss.item() * len(chunk)
            train_loss = total / len(perm)
            val = self.validate()
            history["train"].append(train_loss)
            history["val"].append(val)
            if writer is not None:
                writer.add_scalar("loss/train", train_loss, epoch + 1)
                writer.add_scalar("loss/val", val, epoch + 1)
            bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val:.3f}")
            self.save(self.run_dir / "last.pt", epoch + 1, history)
            score = val if not math.isnan(val) else train_loss
            if score < self.best:
                self.best = score
                self.save(self.run_dir / "best.pt", epoch + 1, history)
        return history

    def save(self, path: Path, epoch: int, history: dict) -> None:
        save_checkpoint(path, {
            "kind": "student",
            "config": {"env": to_dict(self.task), "finetune": to_dict(self.cfg)},
            "model_args": self.model.model_args,
            "model": self.model.state_dict(),
            "counters": {"epoch": epoch},
            "finetune": {"source": self.source,
                         "demos": int(torch.unique(self.windows.demo).numel()),
                         "train_windows": len(self.train_idx), "val_windows": len(self.val_idx),
                         "history": history},
        })


FLAG_KEYS = {"num_epochs": "epochs", "real_batch_size": "batch_size", "lr": "learning_rate",
             "val_ratio": "val_ratio", "seed": "seed"}


def main(args) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from penspin.cli_support import resolve

    flags = [f"train.{key}={getattr(args, flag)}" for flag, key in FLAG_KEYS.items()
             if getattr(args, flag) is not None]
    args.overrides = [*flags, *args.overrides]
    cfg = resolve(FinetuneRunConfig(), args)
    if cfg is None:
        return
    torch.set_num_threads(2)
    demos = load_demos(args.real_dataset_folder)
    if cfg.train.max_demos > 0:
        demos = demos[:cfg.train.max_demos]
    model, task, _ = load_start(args.checkpoint_path, cfg.train)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tuner = Finetuner(model, task, cfg.train, demos, run_dir, args.checkpoint_path)
    used = int(torch.unique(tuner.windows.demo).numel())
    print(f"{used} of {len(demos)} demos long enough, {len(tuner.train_idx)} training and "
          f"{len(tuner.val_idx)} "
          f"validation windows; starting from {args.checkpoint_path or 'a fresh student'}")
    start = time.perf_counter()
    writer = SummaryWriter(str(run_dir / "tb"))
    history = tuner.train(writer)
    writer.close()
    print(f"validation L1 {history['val'][0]:.3f} -> {history['val'][-1]:.3f} "
          f"(best {tuner.best:.3f}) in {time.perf_counter() - start:.0f} s; "
          f"checkpoints in {run_dir} (best.pt, last.pt)")

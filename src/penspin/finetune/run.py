"""``penspin finetune``: train a student further on successful replays (the paper's step 4).

From a student checkpoint (or, for the "no pretrain" baseline, a fresh student), L1 on clamped
actions over sliding windows of the demonstrations, each trajectory weighing as one demo however
often it was replayed, a validation split by trajectory (real windows only), Adam, TensorBoard,
and checkpoints that ``penspin eval`` and ``penspin export-student`` accept. Simulation keeps
what it taught through an anchor to the frozen starting student (its states and actions, an L2
pull) or, as before, an oracle's samples. best.pt is picked by validation L1 or, since L1 barely
tracks how long a pen keeps turning, by closed-loop trials on the proxy at a seed the reported
evaluation never uses. The original's flags (``--num-epochs``, ``--real-batch-size``, ``--lr``,
``--val-ratio``, ``--seed``) map onto ``train.*`` keys.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from penspin.config import ConfigError, from_dict, to_dict
from penspin.finetune.windows import build_windows, demo_weights, label, split
from penspin.replay.dataset import Demo, load_demos
from penspin.replay.trials import RobotEvalConfig
from penspin.rl.checkpoint import load_checkpoint, model_from_payload, save_checkpoint
from penspin.rl.runner import seed_everything
from penspin.robot.factory import RobotConfig
from penspin.student.network import StudentActorCritic, StudentNetworkConfig
from penspin.student.run_distill import student_env
from penspin.task.config import TaskConfig

# Proxy seeds of the reported evaluation (docs/real.md, scripts/step4.sh: 120 trials at
# robot.proxy.seed=100, 64 a batch, so seeds 100 and 101): selection must never see them.
REPORT_SEEDS = range(100, 102)


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 30  # passes over the training windows (original: 3000 of ~1 batch each)
    batch_size: int = 512  # real windows per step (the original script's --real-batch-size)
    learning_rate: float = 3e-4  # Adam step size
    weight_decay: float = 0.0  # Adam weight decay
    val_ratio: float = 0.1  # share of trajectory groups (all repeats of one) held out
    seed: int = 0  # split, batch order and noise
    max_demos: int = 0  # use only the first N demos of the file (0: all)
    grad_norm: float = 1.0  # gradient-norm clip (L2 over all parameters)
    fk_noise: float = 0.002  # m, U(-r, r) on the FK fingertips, as in distillation
    renormalize: bool = False  # refit the obs/fingertip normalisers on the real data once
    update_normalizers: bool = False  # update their running stats on every real batch (original)
    pad_start: bool = True  # windows of a trial's first steps too (false: the original's)
    dedup: bool = True  # weigh each window 1 / (demos of its trajectory): a trajectory = one demo
    target_noise: float = 0.0  # rad, std of a per-window shift of the target history (0: off)
    sim_oracle: str = ""  # an oracle .pt whose simulated samples fill sim_ratio of each batch
    anchor: str = "none"  # "start": anchor to the frozen starting student ("none": no anchor)
    anchor_weight: float = 0.0  # anchor=start: weight of the L2 pull (action units^2) to its means
    sim_samples: int = 20000  # simulated samples (sim_oracle, anchor=start) collected once
    sim_ratio: float = 0.5  # share of each batch that is simulated (0: none collected)
    select: str = "val"  # best.pt by "val" (L1, the weaker choice) or "proxy" (closed loop)
    select_every: int = 5  # epochs between closed-loop scores (select=proxy; the last is scored)
    select_trials: int = 16  # proxy trials per score, spread over the demos' trajectories
    select_seed: int = 7  # proxy seed of the score, never one of the reported evaluation's
    input_mode: str = "proprio"  # for a fresh student (no --checkpoint-path)
    progress: bool = True  # progress bar

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ConfigError("train.epochs, train.batch_size must be >= 1, learning_rate > 0")
        if not 0.0 <= self.val_ratio < 1.0:
            raise ConfigError(f"train.val_ratio must be in [0, 1), got {self.val_ratio}")
        if not 0.0 <= self.sim_ratio < 1.0 or self.sim_samples < 1:
            raise ConfigError("train.sim_ratio must be in [0, 1) and train.sim_samples >= 1")
        if self.anchor not in ("none", "start") or self.select not in ("val", "proxy"):
            raise ConfigError(f"train.anchor must be none|start (got {self.anchor!r}) and "
                              f"train.select val|proxy (got {self.select!r})")
        if self.anchor == "start" and self.sim_oracle:
            raise ConfigError("train.anchor=start and train.sim_oracle both fill the simulated "
                              "share of a batch: choose one")
        if self.sim_oracle and self.sim_ratio == 0:
            raise ConfigError("train.sim_oracle needs train.sim_ratio > 0 (its share of a batch)")
        if self.anchor_weight > 0 and self.anchor != "start":
            raise ConfigError("train.anchor_weight pulls towards the starting student: set "
                              "train.anchor=start (train.sim_ratio=0 for the pull alone)")
        if self.target_noise < 0 or self.anchor_weight < 0 or self.select_every < 1 \
                or self.select_trials < 1:
            raise ConfigError("train.target_noise, anchor_weight >= 0; select_every, "
                              "select_trials >= 1")
        batches = range(self.select_seed,
                        self.select_seed + math.ceil(self.select_trials / RobotEvalConfig.batch))
        if self.select == "proxy" and set(batches) & set(REPORT_SEEDS):
            raise ConfigError(f"train.select_seed={self.select_seed} would score on proxy seeds "
                              f"{list(REPORT_SEEDS)}, the reported evaluation's: choose another")


@dataclass(frozen=True)
class FinetuneRunConfig:
    train: FinetuneConfig = field(default_factory=FinetuneConfig)
    # The robot of the closed-loop score (select=proxy): the proxy as `penspin eval --robot
    # proxy` builds it from the same robot.* keys, its seed replaced by train.select_seed.
    robot: RobotConfig = field(default_factory=RobotConfig)


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
                 demos, run_dir: Path, source: str, scorer=None):
        """``scorer(model) -> float`` (higher is better) picks best.pt when select=proxy."""
        cfg.check()
        if cfg.select == "proxy" and scorer is None:
            raise ConfigError("train.select=proxy needs --trajectories (the trials it scores on)")
        seed_everything(cfg.seed)
        self.model, self.task, self.cfg, self.scorer = model, task, cfg, scorer
        self.windows = build_windows(demos, task.action_scale,
                                     model.input_shapes["proprio_hist"][0], cfg.pad_start)
        self.weights = (demo_weights(self.windows) if cfg.dedup
                        else torch.ones(len(self.windows)))
        if model.use_ends and self.windows.ends is None:
            raise ConfigError("this student reads pen ends, but the demos have no obj_ends "
                              "(replay with replay.camera=true and use real_data_full.h5)")
        if model.use_tactile and self.windows.touch is None:
            raise ConfigError("this student reads touch, but the demos have no touch (replay on "
                              "a hand with touch sensors, such as the proxy)")
        self.train_idx, self.val_idx = split(self.windows, cfg.val_ratio, cfg.seed)
        self.fresh = not source
        if self.fresh:  # a fresh student's normalisers have seen nothing: fit them first
            self._refit()
        # The starting student, frozen: what anchor=start pulls towards and what epoch 0 of
        # select=proxy scores (renormalize=true refits only the student that trains).
        self.start = copy.deepcopy(model).eval()
        if cfg.renormalize and not self.fresh:
            self._refit()
        self.sim = None
        if cfg.sim_oracle:
            from penspin.finetune.sim_data import oracle_samples

            self.sim = oracle_samples(cfg.sim_oracle, task, list(model.input_shapes),
                                      cfg.sim_samples, cfg.seed)
        elif cfg.anchor == "start" and cfg.sim_ratio > 0:
            from penspin.finetune.sim_data import policy_samples

            self.sim = policy_samples(self.start.act_inference, task, list(model.input_shapes),
                                      cfg.sim_samples, cfg.seed)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate,
                                          weight_decay=cfg.weight_decay)
        self.run_dir = run_dir
        self.source = source
        self.best = math.inf

    def _refit(self) -> None:
        """Replace the normalisers' statistics by the training windows' outright."""
        for rms in self.model.normalizers():
            rms.count.zero_()  # the first update then replaces mean and var outright
        inputs, _ = self.windows.batch(self.train_idx)
        self.model.update_normalizers(inputs)

    def _perturb(self, inputs: dict, idx: torch.Tensor) -> tuple[dict, torch.Tensor]:
        """Shift each window's whole target history by one random offset (a closed-loop student's
        targets drift from the demo's) and relabel towards the demo's next absolute target: the
        action that corrects the offset, which only a student that compares its targets with its
        readings can find."""
        shift = torch.randn(len(idx), 16) * self.cfg.target_noise
        hist = inputs["proprio_hist"].clone()
        hist[..., 16:] += shift[:, None]
        inputs = {**inputs, "proprio_hist": hist, "obs": hist[:, -3:].flatten(1)}
        return inputs, label(self.windows.next_target[idx], hist[:, -1, 16:],
                             self.task.action_scale)

    def loss(self, idx: torch.Tensor, train: bool) -> torch.Tensor:
        cfg = self.cfg
        inputs, labels = self.windows.batch(idx)
        weights = self.weights[idx]
        if train and cfg.update_normalizers:
            self.model.update_normalizers(inputs)
        if train and cfg.target_noise > 0:
            inputs, labels = self._perturb(inputs, idx)
        real = len(idx)
        real_weights = weights
        if train and self.sim is not None:
            pick = torch.randint(len(self.sim[1]), (round(real * cfg.sim_ratio /
                                                          (1 - cfg.sim_ratio)),))
            # Only what the student reads: real windows may carry more (touch the hand had).
            inputs = {k: torch.cat([inputs[k], v[pick]]) for k, v in self.sim[0].items()}
            labels = torch.cat([labels, self.sim[1][pick]])
            # A simulated sample weighs as much as the mean real window.
            weights = torch.cat([weights, weights.mean().expand(len(pick))])
        mu = self.model(inputs, fk_noise=cfg.fk_noise if train else 0.0)
        per_sample = (mu.clamp(-1.0, 1.0) - labels).abs().sum(-1)
        loss = (per_sample * weights).sum() / weights.sum()
        if train and cfg.anchor_weight > 0:
            # Unclamped means: a saturated action is still pulled back towards the start's.
            with torch.no_grad():
                start = self.start({k: v[:real] for k, v in inputs.items()})
            pull = (mu[:real] - start).pow(2).sum(-1)
            loss = loss + cfg.anchor_weight * (pull * real_weights).sum() / real_weights.sum()
        return loss

    @torch.no_grad()
    def validate(self) -> float:
        if not len(self.val_idx):
            return math.nan
        self.model.eval()
        losses = [self.loss(chunk, False).item() * self.weights[chunk].sum().item()
                  for chunk in self.val_idx.split(4096)]
        return sum(losses) / self.weights[self.val_idx].sum().item()

    @torch.no_grad()
    def score(self, model: StudentActorCritic) -> float:
        """Closed-loop score (select=proxy): higher is better."""
        model.eval()
        return float(self.scorer(model))

    def train(self, writer=None) -> dict:
        cfg = self.cfg
        history = {"train": [], "val": [self.validate()], "score": []}
        # The starting point competes too: best.pt is never worse than the start by its measure.
        if cfg.select == "proxy":
            history["score"].append([0, self.score(self.start)])
            self.best = -history["score"][0][1]
            self.save(self.run_dir / "best.pt", 0, history, self.start)
        elif not math.isnan(history["val"][0]):
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
            if cfg.select == "proxy":
                if (epoch + 1) % cfg.select_every and epoch + 1 < cfg.epochs:
                    self.save(self.run_dir / "last.pt", epoch + 1, history)
                    continue
                history["score"].append([epoch + 1, self.score(self.model)])
                if writer is not None:
                    writer.add_scalar("select/score", history["score"][-1][1], epoch + 1)
                score = -history["score"][-1][1]
            else:
                score = val if not math.isnan(val) else train_loss
            self.save(self.run_dir / "last.pt", epoch + 1, history)
            if score < self.best:
                self.best = score
                self.save(self.run_dir / "best.pt", epoch + 1, history)
        return history

    def save(self, path: Path, epoch: int, history: dict,
             model: StudentActorCritic | None = None) -> None:
        model = self.model if model is None else model
        save_checkpoint(path, {
            "kind": "student",
            "config": {"env": to_dict(self.task), "finetune": to_dict(self.cfg)},
            "model_args": model.model_args,
            "model": model.state_dict(),
            "counters": {"epoch": epoch},
            "finetune": {"source": self.source,
                         "demos": int(torch.unique(self.windows.demo).numel()),
                         "train_windows": len(self.train_idx), "val_windows": len(self.val_idx),
                         "history": history},
        })


FLAG_KEYS = {"num_epochs": "epochs", "real_batch_size": "batch_size", "lr": "learning_rate",
             "val_ratio": "val_ratio", "seed": "seed"}


def demo_trajectories(demos: list[Demo], targets: np.ndarray) -> np.ndarray:
    """Per demo, the index of the trajectory (``targets`` [E, T, 16], an export-replay file's)
    it replays: its stored ``trajectory_id``, else (older files) the one whose targets begin
    with the demo's, which an open-loop replay's are. A demo that matches none is an error: the
    score would then run on trajectories the demos never came from."""
    out = []
    for d in demos:
        if d.trajectory_id is not None:
            found = [d.trajectory_id] if 0 <= d.trajectory_id < len(targets) else []
        else:
            n = min(d.length, targets.shape[1])
            gap = np.abs(targets[:, :n] - d.target[None, :n]).max(axis=(1, 2))
            found = np.flatnonzero(gap < 1e-5)[:1].tolist()
        if not found:
            raise ConfigError(f"demo {d.name} replays none of the {len(targets)} trajectories "
                              "of --trajectories: pass the file its replay played")
        out.append(found[0])
    return np.asarray(out)


def score_trials(ids: np.ndarray, trials: int) -> np.ndarray:
    """``trials`` trajectory indices spread evenly over the distinct ``ids`` (each trajectory
    once when there are more of them than trials, else each about trials/len times)."""
    distinct = np.unique(ids)
    return distinct[np.arange(trials) * len(distinct) // trials]


def proxy_scorer(trajectories: str, demos: list[Demo], task: TaskConfig, cfg: FinetuneConfig,
                 robot: RobotConfig):
    """``model -> mean rotation per trial (rad)`` on ``select_trials`` proxy trials of the
    demos' trajectories (their pens and start states), at the proxy seed ``select_seed``."""
    import dataclasses

    from penspin.replay.trajectories import Trajectories
    from penspin.replay.trials import run_on_robot
    from penspin.student.policy import Policy
    from penspin.task.config import as_evaluated

    traj = Trajectories.load(trajectories)
    part = traj.subset(score_trials(demo_trajectories(demos, traj.targets), cfg.select_trials))
    proxy = dataclasses.replace(robot.proxy, seed=cfg.select_seed)
    trials = RobotEvalConfig(robot=dataclasses.replace(robot, proxy=proxy))
    evaluated = as_evaluated(task)

    def score(model: StudentActorCritic) -> float:
        policy = Policy("student", model.act_inference, evaluated, "finetune", model)
        return float(run_on_robot(policy, part, "proxy", trials, progress=False)["rotation"]
                     .mean())

    return score


def finetune(cfg: FinetuneRunConfig, run_dir: str | Path, real_dataset_folder: str,
             checkpoint_path: str = "", trajectories: str = "") -> Path:
    """Train the student ``checkpoint_path`` (empty: a fresh one) further on the demos in
    ``real_dataset_folder`` (``trajectories`` feed ``train.select=proxy``); returns the run
    folder."""
    from torch.utils.tensorboard import SummaryWriter

    torch.set_num_threads(2)
    demos = load_demos(real_dataset_folder)
    if cfg.train.max_demos > 0:
        demos = demos[:cfg.train.max_demos]
    model, task, _ = load_start(checkpoint_path, cfg.train)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    scorer = (proxy_scorer(trajectories, demos, task, cfg.train, cfg.robot)
              if cfg.train.select == "proxy" and trajectories else None)
    tuner = Finetuner(model, task, cfg.train, demos, run_dir, checkpoint_path, scorer)
    used = int(torch.unique(tuner.windows.demo).numel())
    print(f"{used} of {len(demos)} demos long enough, {len(tuner.train_idx)} training and "
          f"{len(tuner.val_idx)} "
          f"validation windows; starting from {checkpoint_path or 'a fresh student'}")
    start = time.perf_counter()
    writer = SummaryWriter(str(run_dir / "tb"))
    history = tuner.train(writer)
    writer.close()
    best = (f"best.pt: epoch {load_checkpoint(run_dir / 'best.pt')['counters']['epoch']}, "
            + (f"{-tuner.best:.3f} rad/trial on proxy seed {cfg.train.select_seed} (start "
               f"{history['score'][0][1]:.3f})" if cfg.train.select == "proxy"
               else f"L1 {tuner.best:.3f}"))
    print(f"validation L1 {history['val'][0]:.3f} -> {history['val'][-1]:.3f} ({best}) "
          f"in {time.perf_counter() - start:.0f} s; "
          f"checkpoints in {run_dir} (best.pt, last.pt)")
    return run_dir


def main(args) -> None:
    from penspin.cli_support import resolve

    # The original's flags (--num-epochs ...) are aliases of train.* keys; a key=value wins.
    flags = [f"train.{key}={getattr(args, flag)}" for flag, key in FLAG_KEYS.items()
             if getattr(args, flag) is not None]
    args.overrides = [*flags, *args.overrides]
    cfg = resolve(FinetuneRunConfig(), args)
    if cfg is None:
        return
    finetune(cfg, args.run_dir, args.real_dataset_folder, args.checkpoint_path, args.trajectories)

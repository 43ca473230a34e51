"""A killed and resumed oracle run on the real task matches an uninterrupted one bit for bit."""

from __future__ import annotations

import torch

from penspin.config import apply_overrides
from penspin.oracle.run import OracleRunConfig, build

TINY = ["env.num_envs=4", "env.num_threads=2", "train.ppo.horizon_length=4",
        "train.ppo.num_minibatches=2", "train.ppo.mini_epochs=2", "train.logger=none",
        "train.progress=false", "train.save_every=1000"]


def _trainer(tmp_path, name, steps):
    cfg = apply_overrides(OracleRunConfig(), [*TINY, f"train.max_env_steps={steps}"])
    return build(cfg, tmp_path / name)


def test_resume_matches_uninterrupted_run(tmp_path):
    straight = _trainer(tmp_path, "straight", 64)
    straight.train()

    first = _trainer(tmp_path, "killed", 32)
    first.train()
    first.save(tmp_path / "killed" / "mid.pt")
    first.env.close()
    del first  # the process "dies" here

    resumed = _trainer(tmp_path, "resumed", 64)
    resumed.resume(tmp_path / "killed" / "mid.pt")
    resumed.train()

    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(straight.env.get_state()["physics"], resumed.env.get_state()["physics"])
    straight.env.close()
    resumed.env.close()

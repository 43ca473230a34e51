"""A stop signal ends training at an iteration boundary with last.pt saved, not mid-update."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from penspin.rl.checkpoint import load_checkpoint


def test_sigterm_saves_last_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "penspin.cli", "train-oracle", "--run-dir", str(run),
           "env.num_envs=4", "env.num_threads=1", "train.ppo.horizon_length=4",
           "train.ppo.num_minibatches=1", "train.ppo.mini_epochs=1", "train.logger=none",
           "train.progress=false", "train.save_every=1000000", "train.max_env_steps=100000000"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "best.pt").exists():  # written after the first iteration
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "training never finished an iteration"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping after this iteration" in err
    steps = load_checkpoint(run / "last.pt")["counters"]["env_steps"]
    assert 0 < steps < 100_000_000 and steps % 16 == 0

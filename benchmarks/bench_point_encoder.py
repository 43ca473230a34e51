"""The oracle's update cost with its point encoder's last ELU before or after the max-pool.

PenSpin applies the ELU to every point and then max-pools; ELU is increasing, so pooling first
gives the same features (tests/test_ppo.py) for 1/num_points of the ELU work. This times one PPO
minibatch (forward and backward of the whole network at PenSpin's sizes) both ways, interleaved
in one process so that both see the same allocator and machine state, and prints the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from penspin.rl.networks import OracleActorCritic


def minibatch_loss(model: OracleActorCritic, obs: dict, pool_first: bool) -> torch.Tensor:
    per_point = model.point_mlp(model.point_rms(obs["point_cloud"]))
    if pool_first:
        points = F.elu(per_point.max(dim=-2).values)
    else:
        points = F.elu(per_point).max(dim=-2).values
    priv = model.priv_mlp(model.priv_rms(obs["priv_info"]))
    x = torch.cat([model.obs_rms(obs["obs"]), torch.tanh(torch.cat([priv, points], -1))], -1)
    x = model.actor_mlp(x)
    return model.mu(x).square().mean() + model.value(x).square().mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=768, help="minibatch (256 envs x 12 / 4)")
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    torch.manual_seed(0)
    model = OracleActorCritic(num_points=args.points)
    obs = {"obs": torch.randn(args.batch, 96), "priv_info": torch.randn(args.batch, 61),
           "point_cloud": torch.randn(args.batch, args.points, 3)}
    print("| threads | ELU on every point (ms) | ELU after the pool (ms) | speed-up |")
    print("|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(args.repeats + 3):
            for pool_first in (False, True):
                start = time.perf_counter()
                minibatch_loss(model, obs, pool_first).backward()
                if i >= 3:
                    times[pool_first].append(time.perf_counter() - start)
        each, first = (statistics.median(times[k]) * 1e3 for k in (False, True))
        print(f"| {threads} | {each:.1f} | {first:.1f} | {each / first:.2f}x |", flush=True)


if __name__ == "__main__":
    main()

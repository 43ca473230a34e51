"""The RL machinery every step shares: actor-critic networks, normalisers, PPO, the training
runner, checkpoints, torchrun, the stop signal."""

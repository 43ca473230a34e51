"""Learning side of penspin: networks, normalisers, PPO for the oracle, checkpoints."""

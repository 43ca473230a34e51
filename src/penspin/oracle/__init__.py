"""Step 1: the oracle (privileged state, point cloud, touch) trained by PPO."""

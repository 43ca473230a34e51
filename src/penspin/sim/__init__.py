"""The simulated world: Allegro hand facts, the one MJCF scene, physics backends."""

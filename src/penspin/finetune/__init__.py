"""Step 4: a student trained further on real (or proxy-real) replay data."""

"""Real-to-sim calibration: fit the simulated hand's dynamics to what a real hand recorded.

``penspin excite`` drives a hand (pen absent) through per-joint chirps and steps and records
commanded targets and joint readings; ``penspin calibrate`` replays those commands in the
simulator under candidate parameters and keeps the ones whose joint traces match the readings.
The fitted values carry the proxy's setting names, so one JSON file centres training
randomisation (``--calibration``) and configures a proxy alike.
"""

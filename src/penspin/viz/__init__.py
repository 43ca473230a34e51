"""Seeing a policy: headless MP4 (``render``) and MuJoCo's interactive viewer (``viewer``).

Nothing here is imported by training code, so the GL setup these need never touches it.
"""

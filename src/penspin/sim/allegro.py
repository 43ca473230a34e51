"""Allegro right-hand facts: kinematics, joint order and limits.

Link lengths, joint axes, offsets and masses are the published Allegro values; joint limits are the
ones PenSpin's code clamps targets to (they override the URDF's). The joint order everywhere in
penspin is PenSpin's (Isaac Gym's): index, thumb, middle, ring. ``HARDWARE_ORDER`` maps it to the
order the Allegro driver uses (index, middle, ring, thumb).
"""

from __future__ import annotations

import numpy as np

FINGERS = ("index", "thumb", "middle", "ring")
JOINT_NAMES = tuple(f"{f}_{i}" for f in FINGERS for i in range(4))
NUM_JOINTS = 16

JOINT_LOWER = np.array(
    [-0.5585, -0.27924, -0.27924, -0.27924,
     0.27924, -0.331603, -0.27924, -0.27924,
     -0.5585, -0.27924, -0.27924, -0.27924,
     -0.5585, -0.27924, -0.27924, -0.27924],
    dtype=np.float64,
)
JOINT_UPPER = np.array(
    [0.5585, 1.727825, 1.727825, 1.727825,
     1.57075, 1.1518833, 1.727825, 1.76273055,
     0.5585, 1.727825, 1.727825, 1.727825,
     0.5585, 1.727825, 1.727825, 1.727825],
    dtype=np.float64,
)

# Hardware (driver) order is index, middle, ring, thumb; entry i is the penspin index it reads.
HARDWARE_ORDER = np.array([0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 4, 5, 6, 7])

# The pose PenSpin sends the real hand to before every trial (penspin order).
REAL_INIT_QPOS = np.array(
    [-0.0579, 0.9454, 0.7381, 0.4866,
     1.2916, 0.5402, 0.7264, 0.3481,
     0.0331, 1.3008, 0.1790, 0.2358,
     0.1153, 1.0150, 1.0156, 0.2932],
    dtype=np.float64,
)

# Palm pose in the world: palm up at z = 0.5; hand-local +x (palmar side) -> world +z,
# local +z (finger direction) -> world -y.
PALM_POS = (0.0, 0.0, 0.5)
PALM_ROT = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])

# Finger chain: (base offset in palm frame, base quaternion wxyz) and segment lengths.
FINGER_BASES = {
    "index": ((0.0, 0.0435, -0.001542), (0.999048, -0.0436194, 0.0, 0.0)),
    "middle": ((0.0, 0.0, 0.0007), (1.0, 0.0, 0.0, 0.0)),
    "ring": ((0.0, -0.0435, -0.001542), (0.999048, 0.0436194, 0.0, 0.0)),
    "thumb": ((-0.0182, 0.019333, -0.045987), (0.477714, -0.521334, -0.521334, -0.477714)),
}
# Lengths from each joint to the next (last entry: to the fingertip centre).
FINGER_SEGMENTS = (0.0164, 0.054, 0.0384, 0.0267)
THUMB_SEGMENTS = ((-0.027, 0.005, 0.0399), 0.0177, 0.0514, 0.0423)
FINGER_AXES = ((0, 0, 1), (0, 1, 0), (0, 1, 0), (0, 1, 0))
THUMB_AXES = ((-1, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 0))
FINGER_MASSES = (0.0119, 0.065, 0.0355, 0.0264)
THUMB_MASSES = (0.0176, 0.0119, 0.038, 0.0556)
PALM_MASS = 0.4154

LINK_RADIUS = 0.0105
TIP_RADIUS = 0.012

KP = 3.0
KD = 0.1
TORQUE_LIMIT = 0.7
ARMATURE = 0.001

"""The one place that converts between penspin's joint order and the Allegro driver's.

penspin (and PenSpin's simulation) orders fingers index, thumb, middle, ring; the Allegro driver
and the original's real-world files order them index, middle, ring, thumb. Both functions act on
the last axis of a numpy array or torch tensor of 16 joints (or 4 fingertips x 3 with ``tips``).
"""

from __future__ import annotations

import numpy as np

from penspin.sim.allegro import HARDWARE_ORDER, NUM_JOINTS

# Entry i of the hardware vector is penspin joint HARDWARE_ORDER[i]; the inverse permutation maps
# back.
_TO_PENSPIN = np.argsort(HARDWARE_ORDER)
# Fingertips: penspin index, thumb, middle, ring <-> hardware index, middle, ring, thumb.
_TIPS_TO_HARDWARE = np.array([0, 2, 3, 1])
_TIPS_TO_PENSPIN = np.argsort(_TIPS_TO_HARDWARE)


def _permute(x, order: np.ndarray, size: int, what: str):
    if x.shape[-1] != size:
        raise ValueError(f"{what}: last axis must have {size} entries, got shape {tuple(x.shape)}")
    return x[..., order.tolist()] if not isinstance(x, np.ndarray) else x[..., order]


def to_hardware(x):
    """penspin order -> hardware order (16 joints on the last axis)."""
    return _permute(x, HARDWARE_ORDER, NUM_JOINTS, "to_hardware")


def from_hardware(x):
    """Hardware order -> penspin order (16 joints on the last axis)."""
    return _permute(x, _TO_PENSPIN, NUM_JOINTS, "from_hardware")


def tips_to_hardware(x):
    """Fingertip positions [..., 12] from penspin finger order to hardware finger order."""
    shape = x.shape
    return _permute(x.reshape(*shape[:-1], 4, 3).swapaxes(-1, -2), _TIPS_TO_HARDWARE, 4,
                    "tips_to_hardware").swapaxes(-1, -2).reshape(shape)


def tips_from_hardware(x):
    """Fingertip positions [..., 12] from hardware finger order to penspin finger order."""
    shape = x.shape
    return _permute(x.reshape(*shape[:-1], 4, 3).swapaxes(-1, -2), _TIPS_TO_PENSPIN, 4,
                    "tips_from_hardware").swapaxes(-1, -2).reshape(shape)

"""Ctrl-C or SIGTERM stops a training run at the end of its iteration, with last.pt saved.

A run killed mid-iteration loses everything since its last periodic save (``save_every``
iterations, minutes on a CPU) and could save weights halfway through an optimiser step. So the
first signal only asks the loop to stop; a second one acts as usual (aborts at once).
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

from penspin.rl import distributed

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """``requested`` turns true once a stop signal arrived on any rank."""

    def __init__(self) -> None:
        self._local = False

    def _handle(self, signum, frame) -> None:
        self._local = True
        for sig in _SIGNALS:  # a second signal aborts
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT
                          else signal.SIG_DFL)
        print(f"\n{signal.Signals(signum).name}: stopping after this iteration and saving "
              "last.pt (send it again to abort now)", file=sys.stderr, flush=True)

    @property
    def requested(self) -> bool:
        """Agreed by all ranks, so they leave the loop at the same iteration."""
        return distributed.any_rank(self._local)


@contextmanager
def stop_on_signal():
    """Install the handlers for the duration of a training loop (main thread only)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    for sig in _SIGNALS:
        signal.signal(sig, request._handle)
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

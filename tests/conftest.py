"""Shared test settings."""

# Before anything imports mujoco: a headless GL backend, so rendering tests run without a display.
import penspin.sim.gl  # noqa: F401

# isort: split
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matmuls gain nothing from threads, and two threads on a busy 2-core box crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Make a test fail loudly if anything tries to open a network connection."""

from __future__ import annotations

import os
import socket

import pytest
import torch

__all__ = ["NetworkAccessError", "block_network", "single_thread"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class NetworkAccessError(RuntimeError):
    pass


@pytest.fixture
def block_network(monkeypatch):
    """Any ``socket.connect`` raises :class:`NetworkAccessError` (HF_HUB_OFFLINE is set as well)."""

    def refuse(self, address, *args, **kwargs):
        raise NetworkAccessError(f"test tried to open a network connection to {address!r}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    yield


@pytest.fixture(scope="module")
def single_thread():
    """Run torch on one thread for the module, then restore: tiny models gain nothing from threads, and on a
    shared, loaded CPU intra-op spin-waiting made a 20-ms step take seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

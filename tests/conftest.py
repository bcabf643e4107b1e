"""Fixtures shared by the test modules."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from tars_actors.runtime.log import configure_logging, reset_logging
from tars_actors.sim.world import LocalWorld
from tests.rig import Rig


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """The JSON log lines the test produces (read them with tests.logs.log_events)."""
    stream = io.StringIO()
    configure_logging(level="info", format="json", stream=stream)
    yield stream
    reset_logging()


@pytest.fixture
def world(logs: io.StringIO) -> Iterator[LocalWorld]:
    """A whole TARS with its stand-ins on 127.0.0.1 (logging JSON into ``logs``)."""
    with LocalWorld() as running:
        yield running
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """The stand-ins here, and ``python run.py`` as a child process when the test asks."""
    with Rig(tmp_path) as running:
        yield running

"""Fixtures for end-to-end tests: a session bound to the test server and source directories."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import trainforge
from tests.support.server import ServerProcess
from trainforge.settings import Settings


@pytest.fixture
def session(server: ServerProcess) -> trainforge.Session:
    """An SDK session talking to the test server exactly as a user's would."""
    return trainforge.Session(settings=Settings(home=server.home))


@pytest.fixture
def make_source(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write ``{relative path: text}`` into a fresh source directory and return it."""
    counter = iter(range(1000))

    def make(files: dict[str, str]) -> Path:
        root = tmp_path / f"src{next(counter)}"
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return root

    return make

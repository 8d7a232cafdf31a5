"""The store of ``requirements.txt`` layer resolutions, on SQLite and PostgreSQL: first writer wins, racing writers
all get the one that won, and the service refuses malformed input naming the field."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import fresh_database
from trainforge.errors import NotFoundError, ValidationError
from trainforge.service.environment_locks import get_environment_lock, put_environment_lock
from trainforge.store import open_job_store
from trainforge.store.environment_locks import EnvironmentLockStore

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EnvironmentLockStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = fresh_database(request.getfixturevalue("postgres_url"))
    engine = open_job_store(url).engine
    yield EnvironmentLockStore(engine)
    engine.dispose()


def test_the_first_resolution_stored_under_a_key_stays(store: EnvironmentLockStore) -> None:
    assert store.get(KEY) is None
    first, created = store.put(KEY, "six===1.17.0 \\\n    --hash=sha256:aa\n", "3.11.7", now=100.0)
    assert created and (first.key, first.python, first.created_time) == (KEY, "3.11.7", 100.0)
    assert store.get(KEY) == first
    again, created_again = store.put(KEY, "six===1.16.0 \\\n    --hash=sha256:bb\n", "3.11.8", now=200.0)
    assert not created_again and again == first
    other, created_other = store.put("f" * 32, "tomli===2.0.1\n", "3.11.7")
    assert created_other and other.resolution == "tomli===2.0.1\n" and store.get(KEY) == first


def test_racing_writers_all_get_the_one_that_won(store: EnvironmentLockStore) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def put(i: int) -> None:
        barrier.wait()
        results.append(store.put(KEY, f"pkg{i}===1.0\n", "3.11.7")[0].resolution)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stored = store.get(KEY)
    assert stored is not None and results == [stored.resolution] * 8


def test_the_service_answers_and_refuses_naming_the_field(store: EnvironmentLockStore) -> None:
    with pytest.raises(NotFoundError, match=f"no resolution is stored under key {KEY}"):
        get_environment_lock(store, KEY)
    reply, created = put_environment_lock(store, KEY, resolution="six===1.17.0\n", python="3.11.7")
    assert created and reply["Resolution"] == "six===1.17.0\n" and reply["Key"] == KEY
    second, created_again = put_environment_lock(store, KEY, resolution="six===1.16.0\n", python="3.11.7")
    assert not created_again and second == reply == get_environment_lock(store, KEY)
    for key in ("short", "G" * 32, "../" + "a" * 32):
        with pytest.raises(ValidationError) as info:
            get_environment_lock(store, key)
        assert info.value.details["field"] == "key"
    with pytest.raises(ValidationError) as info:
        put_environment_lock(store, "e" * 32, resolution="  \n", python="3.11.7")
    assert info.value.details["field"] == "resolution"
    with pytest.raises(ValidationError) as info:
        put_environment_lock(store, "e" * 32, resolution="six===1.17.0\n", python="not a version")
    assert info.value.details["field"] == "python"
    assert store.get("e" * 32) is None

"""Console sign-outs and used tickets live in the database: two ``Sessions`` over one database (two servers)
cannot both redeem a ticket, and a session signed out on one is refused by the other."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.support.postgres import fresh_database
from trainforge.server.console.session import TICKET_MAX_AGE_S, Sessions
from trainforge.store import open_job_store
from trainforge.store.console import ConsoleNonceStore

SECRET = b"one-console-secret"
T0 = 1_700_000_000.0


def _nonces(url: str) -> ConsoleNonceStore:
    return ConsoleNonceStore(open_job_store(url).engine)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


def test_two_servers_on_one_database_redeem_a_ticket_once(database_url: str) -> None:
    first, second = Sessions(SECRET, _nonces(database_url)), Sessions(SECRET, _nonces(database_url))
    ticket, _ = first.make_ticket("alice", "tok1", now=T0)
    assert second.redeem_ticket(ticket, now=T0 + 1) == ("alice", "tok1")
    assert first.redeem_ticket(ticket, now=T0 + 2) is None
    assert second.redeem_ticket(ticket, now=T0 + 3) is None


def test_racing_redeems_of_one_ticket_accept_exactly_one(database_url: str) -> None:
    servers = [Sessions(SECRET, _nonces(database_url)) for _ in range(2)]
    tickets = [servers[0].make_ticket("bob", "tok2", now=T0)[0] for _ in range(5)]

    def redeem(s: Sessions, ticket: str, barrier: threading.Barrier, results: list[object]) -> None:
        barrier.wait()
        results.append(s.redeem_ticket(ticket, now=T0 + 1))

    for ticket in tickets:
        results: list[object] = []
        barrier = threading.Barrier(8)
        threads = [threading.Thread(target=redeem, args=(servers[i % 2], ticket, barrier, results)) for i in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(results, key=str) == [("bob", "tok2")] + [None] * 7


def test_a_sign_out_on_one_server_is_refused_by_another_and_after_a_restart(database_url: str) -> None:
    first = Sessions(SECRET, _nonces(database_url))
    cookie = first.issue("carol", "tok3", now=T0)
    session = first.verify(cookie, now=T0 + 1)
    assert session is not None
    other = first.issue("carol", "tok3", now=T0)
    first.revoke(session, now=T0 + 2)
    restarted = Sessions(SECRET, _nonces(database_url))  # a new process: nothing in memory
    assert restarted.verify(cookie, now=T0 + 3) is None
    assert first.verify(cookie, now=T0 + 3) is None
    assert restarted.verify(other, now=T0 + 3) is not None  # another session of the same user is untouched


def test_expired_rows_are_purged_and_a_forged_ticket_stores_nothing(database_url: str) -> None:
    nonces = _nonces(database_url)
    sessions = Sessions(SECRET, nonces)
    ticket, expires = sessions.make_ticket("dave", "tok4", now=T0)
    assert sessions.redeem_ticket(ticket, now=T0 + 1) is not None
    forged = ticket[:-3] + ("AAA" if not ticket.endswith("AAA") else "BBB")
    assert sessions.redeem_ticket(forged, now=T0 + 1) is None
    nonce = ticket.split(".")[3]
    assert nonces.contains(nonce, "ticket") and not nonces.contains(nonce, "signout")
    assert nonces.purge(now=expires - 1) == 0
    assert nonces.purge(now=expires + 1) == 1
    assert not nonces.contains(nonce, "ticket")
    # Purged after it expired, the ticket is still refused: by its own expiry.
    assert sessions.redeem_ticket(ticket, now=T0 + TICKET_MAX_AGE_S + 2) is None

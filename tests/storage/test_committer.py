"""The group committer against a real Postgres: whatever a flush raises fails
only its own calls and the loop lives on; a commit stuck on a lock fails
with `CommitError` at its deadline instead of hanging every later turn; a
reporting write says after COMMIT whether it inserted its row."""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from core.errors import Unavailable
from storage.committer import CommitError, GroupCommitter, Write
from storage.db import Database
from tests.conftest import Org
from tests.waiting import eventually

INSERT = "INSERT INTO contacts (id, organization_id, first_name) VALUES ($1, $2, $3)"
RENAME = "UPDATE contacts SET first_name = $2 WHERE id = $1"
INSERT_ONCE = INSERT + " ON CONFLICT DO NOTHING RETURNING id"
GUARD = 15.0  # a hung committer fails the test instead of hanging it


async def _names(db: Database, org: Org) -> set[str]:
    async with db.tenant_tx(org.id) as conn:
        return {r["first_name"] for r in await conn.fetch("SELECT first_name FROM contacts")}


def _insert(org: Org, name: str) -> Write:
    return Write(INSERT, (str(uuid.uuid4()), str(org.id), name))


@pytest.mark.parametrize("bad", [
    Write(INSERT, ("only one argument",)),  # the driver refuses it (InterfaceError)
    Write(INSERT, None),  # type: ignore[arg-type]  # building the statement raises TypeError
], ids=["driver-error", "python-error"])
async def test_a_write_that_raises_fails_alone_and_the_loop_lives_on(
        db: Database, org: Org, bad: Write) -> None:
    async with asyncio.timeout(GUARD), GroupCommitter(db) as committer:
        results = await asyncio.gather(
            committer.commit(org.id, [_insert(org, "Before")]),
            committer.commit(org.id, [bad]),
            committer.commit(org.id, [_insert(org, "Beside")]),
            return_exceptions=True)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], CommitError)
        await committer.commit(org.id, [_insert(org, "After")])
    assert await _names(db, org) == {"Before", "Beside", "After"}


async def test_a_foreign_key_violation_names_its_sqlstate(db: Database, org: Org) -> None:
    chat = "INSERT INTO messages (chat_id, organization_id, sender_type, content, is_incoming)" \
           " VALUES ($1, $2, 'contact', 'hi', true)"
    async with asyncio.timeout(GUARD), GroupCommitter(db) as committer:
        with pytest.raises(CommitError) as caught:
            await committer.commit(org.id, [Write(chat, (str(uuid.uuid4()), str(org.id)))])
    assert caught.value.sqlstate == "23503"


async def test_a_commit_blocked_on_a_lock_times_out_and_the_next_one_commits(
        db: Database, org: Org) -> None:
    contact = await _contact(db, org)
    async with asyncio.timeout(GUARD), GroupCommitter(db, timeout=1.0) as committer:
        async with _locked(db, contact):
            started = time.monotonic()
            blocked = asyncio.ensure_future(
                committer.commit(org.id, [Write(RENAME, (contact, "Blocked"))]))
            await eventually(lambda: _waiting_on_a_lock(db), what="the flush waits on the lock")
            behind = asyncio.ensure_future(committer.commit(org.id, [_insert(org, "Behind")]))
            results = await asyncio.gather(blocked, behind, return_exceptions=True)
            waited = time.monotonic() - started
        assert isinstance(results[0], CommitError), results
        assert isinstance(results[0], Unavailable)  # retryable
        # The call queued behind it did not hang either: it went through once
        # the stuck flush gave up, or reached its own deadline first.
        assert results[1] is None or isinstance(results[1], CommitError), results
        assert waited < 5.0
        await committer.commit(org.id, [Write(RENAME, (contact, "Renamed"))])
    # The stuck transaction was rolled back; nothing of it is stored.
    assert await _names(db, org) == {"Renamed"} | ({"Behind"} if results[1] is None else set())


async def _contact(db: Database, org: Org) -> str:
    contact = str(uuid.uuid4())
    async with db.tenant_tx(org.id) as conn:
        await conn.execute(INSERT, contact, str(org.id), "Original")
    return contact


@contextlib.asynccontextmanager
async def _locked(db: Database, contact: str) -> AsyncIterator[None]:
    """Another transaction holds `contact`'s row lock for the block."""
    assert db.system is not None
    async with db.system.acquire() as holder:
        locked = holder.transaction()
        await locked.start()
        await holder.execute("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", contact)
        try:
            yield
        finally:
            await locked.rollback()


async def _waiting_on_a_lock(db: Database) -> bool:
    assert db.system is not None
    return bool(await db.system.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bidi_app'"
        " AND wait_event_type = 'Lock'"))


def _once(org: Org, contact: str, name: str) -> Write:
    return Write.reporting(INSERT_ONCE, (contact, str(org.id), name))


async def test_reporting_writes_say_whether_they_inserted(db: Database, org: Org) -> None:
    old, new, solo = (str(uuid.uuid4()) for _ in range(3))
    async with db.tenant_tx(org.id) as conn:
        await conn.execute(INSERT, old, str(org.id), "Old")
    writes = [[_once(org, new, "New"), _insert(org, "Plain")], [_once(org, old, "Again")],
              [_once(org, new, "Twice"), _once(org, solo, "Solo")]]
    async with asyncio.timeout(GUARD), GroupCommitter(db) as committer:
        await asyncio.gather(*(committer.commit(org.id, w) for w in writes))
        # one flush: the two writes at level 0 ran as one statement
        assert committer.stats.flushes == 1
        alone = _once(org, old, "Alone")
        await committer.commit(org.id, [alone])
    assert [[w.inserted for w in call if w.outcome] for call in writes] == [
        [True], [False], [False, True]]
    assert alone.inserted is False
    assert await _names(db, org) == {"Old", "New", "Plain", "Solo"}
    with pytest.raises(ValueError):
        _ = writes[0][1].inserted  # a plain write does not report


async def test_reporting_writes_keep_their_outcome_through_the_one_by_one_retry(
        db: Database, org: Org) -> None:
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    async with db.tenant_tx(org.id) as conn:
        await conn.execute(INSERT, old, str(org.id), "Old")
    first, second = _once(org, new, "New"), _once(org, old, "Again")
    failing = _once(org, str(uuid.uuid4()), "Failing")
    async with asyncio.timeout(GUARD), GroupCommitter(db) as committer:
        results = await asyncio.gather(
            committer.commit(org.id, [first]), committer.commit(org.id, [second]),
            committer.commit(org.id, [failing, Write(INSERT, ("only one argument",))]),
            return_exceptions=True)
        assert committer.stats.retries == 1
    assert results[0] is None and results[1] is None, results
    assert isinstance(results[2], CommitError)
    assert (first.inserted, second.inserted) == (True, False)
    with pytest.raises(ValueError):
        _ = failing.inserted  # rolled back: it inserted nothing that counts
    assert await _names(db, org) == {"Old", "New"}


async def test_a_flush_waiting_on_a_lock_does_not_hold_the_next_one(
        db: Database, org: Org) -> None:
    """Two transactions in flight: a turn whose writes wait on a row lock
    does not hold the turns after it, which commit in a second transaction."""
    contact = await _contact(db, org)
    async with asyncio.timeout(GUARD), GroupCommitter(db, max_flushes=2) as committer:
        async with _locked(db, contact):
            blocked = asyncio.ensure_future(
                committer.commit(org.id, [Write(RENAME, (contact, "Renamed"))]))
            await eventually(lambda: _waiting_on_a_lock(db), what="the flush waits on the lock")
            await asyncio.wait_for(committer.commit(org.id, [_insert(org, "Beside")]), 5)
            assert not blocked.done()
        await blocked
    assert await _names(db, org) == {"Renamed", "Beside"}


async def test_a_burst_is_shared_by_the_free_transactions(db: Database, org: Org) -> None:
    """Calls handed in at once (a poll's batch), with both transactions
    free, commit in two flushes side by side; a few calls stay one flush."""
    async with asyncio.timeout(GUARD), GroupCommitter(db, max_flushes=2,
                                                      split_at=32) as committer:
        await asyncio.gather(*(committer.commit(org.id, [_insert(org, f"few {i}")])
                               for i in range(31)))
        assert (committer.stats.flushes, committer.stats.last_batch_rows) == (1, 31)
        await asyncio.gather(*(committer.commit(org.id, [_insert(org, f"burst {i}")])
                               for i in range(100)))
        assert committer.stats.flushes == 3 and committer.stats.calls == 131
        assert committer.stats.last_batch_rows == 50
    assert await _names(db, org) == {*(f"few {i}" for i in range(31)),
                                     *(f"burst {i}" for i in range(100))}


BULK_INSERT = ("INSERT INTO contacts (id, organization_id, first_name)"
               " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])")


async def test_writes_with_a_bulk_form_flush_as_one_statement(db: Database, org: Org) -> None:
    """Flushed together, writes with a bulk form run it once over arrays of
    their arguments (one alone runs its own statement); reporting ones say
    which inserted, the first of two with the same key winning."""
    same = str(uuid.uuid4())
    plain = [Write(INSERT, (str(uuid.uuid4()), str(org.id), f"bulk {i}"), bulk=BULK_INSERT)
             for i in range(3)]
    reporting = [Write.reporting(INSERT_ONCE, (key, str(org.id), name),
                                 bulk=BULK_INSERT + " ON CONFLICT DO NOTHING RETURNING id")
                 for key, name in ((same, "first"), (same, "second"), (str(uuid.uuid4()), "other"))]
    async with asyncio.timeout(GUARD), GroupCommitter(db) as committer:
        await committer.commit(org.id, [Write(INSERT, (str(uuid.uuid4()), str(org.id), "alone"),
                                              bulk="not SQL: a write alone runs its own")])
        await asyncio.gather(*(committer.commit(org.id, [w]) for w in [*plain, *reporting]))
    assert [w.inserted for w in reporting] == [True, False, True]
    assert await _names(db, org) == {"alone", "bulk 0", "bulk 1", "bulk 2", "first", "other"}

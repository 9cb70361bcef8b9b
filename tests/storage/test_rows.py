"""storage.rows.one: the row of a statement that always returns one, and a
plain internal error naming the statement when that promise breaks."""
from __future__ import annotations

import pytest

from storage.db import Database
from storage.rows import one
from tests.conftest import Org


async def test_one_is_the_row_the_statement_returned(db: Database, org: Org) -> None:
    async with db.tenant_tx(org.id) as conn:
        row = await conn.fetchrow("SELECT count(*) AS n FROM contacts")
    assert one(row, "SELECT count(*) FROM contacts") is row
    assert one(row, "SELECT count(*) FROM contacts")["n"] == 0


def test_one_names_the_statement_that_returned_no_row() -> None:
    with pytest.raises(RuntimeError, match="^INSERT INTO notes returned no row$"):
        one(None, "INSERT INTO notes")

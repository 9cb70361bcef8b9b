"""The one place where database errors become the project's own.

`tenant_tx` and `system_tx` translate what escapes them: a constraint a
storage module expects (registered with `expect(name, error)`, next to the
statement that can break it) raises that module's error; any other broken
constraint is a `Conflict` naming only the constraint (never Postgres's
DETAIL, which can quote another user's data); a value Postgres refuses as
data is `Invalid`; a statement cancelled by its timeout is `Unavailable`.
Everything else stays as it is: a bug, answered 500 and logged.

    asyncpg.IntegrityConstraintViolationError -> expected error | Conflict
    asyncpg.DataError, UnicodeEncodeError     -> InvalidValue (422)
    asyncpg.QueryCanceledError                -> Unavailable (503, retry)
"""
from __future__ import annotations

from collections.abc import Callable

import asyncpg

from core.errors import BidiError, Conflict, Invalid, Unavailable

_EXPECTED: dict[str, Callable[[], BidiError]] = {}


class InvalidValue(Invalid):
    """Input the database refused as data: NUL bytes, out-of-range numbers,
    unencodable text."""

    code = "invalid_value"


def expect(constraint: str, error: Callable[[], BidiError]) -> None:
    """When `constraint` is broken, raise `error()` instead of a generic conflict."""
    _EXPECTED[constraint] = error


def translate(exc: BaseException) -> BaseException:
    """The project's error for a database error (or `exc` itself)."""
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        name = exc.constraint_name or ""
        factory = _EXPECTED.get(name)
        if factory is not None:
            return factory()
        return Conflict("the change conflicts with existing data",
                        details={"constraint": name or None})
    if isinstance(exc, asyncpg.DataError | UnicodeEncodeError):
        return InvalidValue(f"a value was refused: {type(exc).__name__}")
    if isinstance(exc, asyncpg.QueryCanceledError):
        return Unavailable("the database took too long; retry", retry_after=1.0)
    return exc


TRANSLATED = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError,
              asyncpg.QueryCanceledError, UnicodeEncodeError)

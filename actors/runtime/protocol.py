"""What travels between callers and hosts.

An envelope is a plain tuple `(kind, org_id, key, message, mode, timeout)`;
failures are `(index, code, text)` (`Host.accept` refuses a message with a
code). Errors cross the wire (actors.runtime.wire) as codes and are raised
again on the caller's side as the same `core.errors` class.
"""
from __future__ import annotations

from typing import Any

from core import errors

TELL = 0
ASK = 1

Envelope = tuple[str, str, str, Any, int, float]
Failure = tuple[int, str, str]

MAILBOX_FULL = "mailbox_full"
HOST_UNAVAILABLE = "host_unavailable"


class TurnError(errors.BidiError):
    """A turn raised an error that is not one of ours."""

    code = "turn_error"


class MailboxFull(errors.Unavailable):
    """The actor's mailbox is at its limit: retry later."""

    code = MAILBOX_FULL


class HostUnavailable(errors.Unavailable):
    """The owning host died or is restarting; the call may not have run."""

    code = HOST_UNAVAILABLE


_BY_CODE: dict[str, type[errors.BidiError]] = {
    cls.code: cls
    for cls in (errors.NotFound, errors.Conflict, errors.RateLimited, errors.Invalid,
                errors.Unauthorized, errors.Forbidden, errors.Unavailable, errors.Unreachable,
                errors.WindowClosed,
                errors.ProviderError, MailboxFull, HostUnavailable)
}


def encode_error(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, errors.BidiError):
        return exc.code, exc.message
    return TurnError.code, f"{type(exc).__name__}: {exc}"


def decode_error(code: str, text: str) -> errors.BidiError:
    cls = _BY_CODE.get(code)
    if cls is None:
        err = TurnError(text)
        err.code = code
        return err
    if cls is errors.RateLimited:
        return errors.RateLimited(text, retry_after=1.0)
    return cls(text)

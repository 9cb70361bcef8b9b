"""Standard Webhooks signing, checked against the spec's published example."""
from __future__ import annotations

import pytest

from channels.signing import SignatureError, headers, new_secret, sign, verify

# The example from the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_matches_the_specification_example() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIG
    got = verify([SPEC_SECRET], {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS),
                                 "webhook-signature": SPEC_SIG}, SPEC_BODY, now=SPEC_TS + 10)
    assert got == SPEC_ID


def test_round_trip_and_rotation() -> None:
    old, new = new_secret(), new_secret()
    assert new.startswith("whsec_") and old != new
    body = b'{"hello": "world"}'
    sent = headers(new, "msg_1", body, now=1_000_000)
    assert verify([old, new], sent, body, now=1_000_000) == "msg_1"
    both = {**sent, "webhook-signature": sign(old, "msg_1", 1_000_000, body) + " "
            + sent["webhook-signature"]}
    assert verify([new], both, body, now=1_000_000) == "msg_1"


@pytest.mark.parametrize("change", ["body", "id", "timestamp", "stale", "missing", "secret"])
def test_tampering_is_refused(change: str) -> None:
    secret, body = new_secret(), b'{"a": 1}'
    sent = headers(secret, "msg_2", body, now=2_000_000)
    now = 2_000_000
    if change == "body":
        body = b'{"a": 2}'
    elif change == "id":
        sent["webhook-id"] = "msg_3"
    elif change == "timestamp":
        sent["webhook-timestamp"] = "2000001"
    elif change == "stale":
        now += 301
    elif change == "missing":
        del sent["webhook-signature"]
    elif change == "secret":
        secret = new_secret()
    with pytest.raises(SignatureError):
        verify([secret], sent, body, now=now)

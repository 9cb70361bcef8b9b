from __future__ import annotations

import msgspec

from core.messages import InboundMessage, Sender


def test_inbound_round_trips_and_has_a_stable_dedup_key() -> None:
    message = InboundMessage(organization_id="o", integration_id="i", channel="api",
                             thread_id="t-1", external_id="m-9",
                             sender=Sender(id="u-1", name="Ada"), text="hi")
    wire = msgspec.msgpack.encode(message)
    back = msgspec.msgpack.decode(wire, type=InboundMessage)
    assert back == message
    assert back.dedup_key == message.dedup_key == "api:i:t-1:m-9"
    other = msgspec.structs.replace(message, text="edited")
    assert other.dedup_key == message.dedup_key

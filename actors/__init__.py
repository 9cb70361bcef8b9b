"""Virtual actors on Ray: what needs hot state or serial order.

- `refs`: the typed references callers use (`ChatRef`, `OrgRef`, `AgentRef`)
- `chat`, `org`, `agent`: the actor kinds (registered by `kinds`)
- `relay`: committed events to Redis; `outbox`: re-sends pending messages
- `unread`: the Redis mirror of unread counts; `messages`: shared Structs
- `runtime/`: hosts, placement, batching, retries, lifespans
"""

__all__ = ["agent", "chat", "kinds", "messages", "org", "outbox", "refs", "relay", "unread"]

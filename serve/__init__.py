"""HTTP and WebSocket only: parse, authorize, call storage or an actor,
shape the answer.

- `app`: the FastAPI app and its runtime; `ingress`: the Serve deployment
- `auth`: principals (users, API keys), `require`, `session`
- `errors`: errors to statuses and the envelope, WebSocket close codes
- `fastpath`: raw-ASGI routes for the hottest requests; `limits`: body caps
- `hub`: WebSocket fan-out; `inbound`: inbound webhooks to chat actors
- `throttle`: sign-in limits; `routers/`: one module per resource
- `stack`: starts and stops the engine; `cli`: the `bidi` command
"""

__all__ = [
    "app", "auth", "cli", "errors", "fastpath", "hub", "inbound", "ingress", "limits", "stack"
]

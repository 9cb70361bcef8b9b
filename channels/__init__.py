"""Channel connectors: protocol only (verify, parse into `InboundMessage`,
send an `OutboundMessage`, map provider errors), no SQL and no decisions.

- `base`: the connector protocol, `ChannelError`, the sender registry
- `api`: the generic API channel (Standard Webhooks in and out)
- `signing`: Standard Webhooks signatures
- `netguard`: the one guarded HTTP client every outbound request uses (SSRF)
"""

__all__ = ["api", "base", "netguard", "signing"]

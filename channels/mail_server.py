"""Where a mail protocol client connects, and as whom: one shape for IMAP
(channels.imap) and SMTP (channels.smtp) alike."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TLS = Literal["ssl", "starttls", "none"]


@dataclass(frozen=True)
class MailServer:
    host: str
    port: int
    tls: TLS  # ssl: TLS from the first byte; starttls: upgraded; none: plain text
    username: str
    password: str = field(repr=False)
    timeout: float = 30.0  # seconds any one wait on the server may take

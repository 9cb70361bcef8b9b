"""The actor kinds an actor host runs unless told otherwise.

Kinds travel to the Ray hosts as classes: Ray pickles a class by reference
(its module and name), so any kind defined in an importable module works,
and a host imports it when it unpickles its arguments."""
from __future__ import annotations

from actors.agent import AgentActor
from actors.chat import ChatActor
from actors.mailbox import MailboxPoller
from actors.org import OrgActor
from actors.poller import TelegramPoller
from actors.runtime.actor import VirtualActor

DEFAULT_KINDS: tuple[type[VirtualActor], ...] = (OrgActor, ChatActor, AgentActor,
                                                 TelegramPoller, MailboxPoller)

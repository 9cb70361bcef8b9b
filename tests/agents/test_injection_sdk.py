"""The injection corpus again, with the model behind the real OpenAI SDK:
the fake server (tests/fakes/openai.py) answers each case's harmful tool
calls in OpenAI's wire shape, so the calls the loop refuses or holds came
through the same parsing a real model's would. Same checks as
tests/agents/test_runner.py, against two orgs in Postgres."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest

from agents.providers import OpenAIProvider
from storage.db import Database
from tests.agents.injection_corpus import CASES, Case, build_world, snapshot
from tests.agents.scripted import Outbox
from tests.agents.test_runner import run_case, verify
from tests.fakes.openai import FakeOpenAI

# The token-budget case counts on the usage its scripted model reports; the
# fake counts characters (the whole prompt, each step), so its budget is not
# spent the same way, and the other cases get a run budget that their
# prompts cannot spend (what they test is not tokens).
SCRIPTED_USAGE = {"a token budget spent"}
SDK_CASES = [dataclasses.replace(c, guardrails={"max_tokens_per_run": 200_000,
                                                **c.guardrails})
             for c in CASES if c.name not in SCRIPTED_USAGE]
LOOPING = 25  # answers of an endless tool loop (more than any max_tool_steps)


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAI]:
    from serve.stack import free_port

    server = FakeOpenAI(free_port()).start()
    yield server
    server.stop()


@pytest.mark.parametrize("case", SDK_CASES, ids=[c.name for c in SDK_CASES])
async def test_injection_through_the_sdk(db: Database, case: Case, model: FakeOpenAI) -> None:
    world = await build_world(db, alice=case.contact or None)
    ours, theirs = await snapshot(db, world.ours), await snapshot(db, world.theirs)
    key = model.new_key()
    steps = [[(name, world.fill(arguments)) for name, arguments in step]
             for step in case.steps]
    if case.repeat:
        steps += [steps[-1]] * LOOPING
    model.script(key, *steps, *([] if case.repeat else [world.fill(case.final)]))
    outbox = Outbox()
    async with OpenAIProvider(key, base_url=model.url + "/v1", timeout=10,
                              max_retries=0) as provider:
        result = await run_case(world, case, outbox, provider)
    sent = model.requests(key)
    fed = [m.get("tool_call_id") for m in sent[-1]["messages"] if m.get("role") == "tool"]
    await verify(db, world, case, result, outbox, json.dumps(sent), fed, ours, theirs)

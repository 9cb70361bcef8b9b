"""The CRM views in a real Chromium against the real engine: the kanban
(drag and drop, the keyboard move, live moves by others), the settings
sections (an integration, an API key, an invitation), and the contact panel
(an inline edit and a note), each checked on the API, not only on screen."""
from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import Dialog, Page, Route, expect

from serve.stack import Stack
from tests.browser.conftest import screenshot_path, sign_in
from tests.conftest import Account, register
from tests.waiting import eventually


async def _pipeline(api: httpx.AsyncClient, owner: Account) -> dict[str, Any]:
    resp = await api.post("/v1/pipelines", headers=owner.headers, json={
        "name": "Sales", "stages": [{"name": "Lead"}, {"name": "Qualified"}, {"name": "Won"}]})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _deal(api: httpx.AsyncClient, owner: Account, pipeline: dict[str, Any], name: str,
                value: float, stage: int = 0, contact_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "pipeline_id": pipeline["id"], "value": value,
                            "stage_id": pipeline["stages"][stage]["id"]}
    if contact_id:
        body["contact_id"] = contact_id
    resp = await api.post("/v1/deals", headers=owner.headers, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _column(page: Page, stage: dict[str, Any]) -> Any:
    return page.locator(f'section.stage[data-stage-id="{stage["id"]}"]')


async def test_dragging_a_card_moves_the_deal(page: Page, stack: Stack, api: httpx.AsyncClient,
                                              owner: Account) -> None:
    pipeline = await _pipeline(api, owner)
    lead, qualified = pipeline["stages"][0], pipeline["stages"][1]
    contact = (await api.post("/v1/contacts", headers=owner.headers,
                              json={"first_name": "Ada", "last_name": "Lovelace"})).json()
    deal = await _deal(api, owner, pipeline, "Engines for Acme", 1200, contact_id=contact["id"])
    await _deal(api, owner, pipeline, "Looms for Jacquard", 300)
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/pipeline/{pipeline['id']}")

    card = page.locator(f'li.deal-card[data-deal-id="{deal["id"]}"]')
    await expect(card).to_contain_text("Engines for Acme")
    await expect(card).to_contain_text("Ada Lovelace")
    await expect(_column(page, lead).locator(".stage-count")).to_have_text("2")
    await expect(_column(page, qualified).locator(".cards-empty")).to_be_visible()

    await card.drag_to(_column(page, qualified).locator(".cards"))

    await expect(_column(page, qualified).locator(".stage-count")).to_have_text("1")
    await expect(_column(page, lead).locator(".stage-count")).to_have_text("1")
    await expect(_column(page, qualified)).to_contain_text("Engines for Acme")
    await expect(_column(page, qualified).locator(".stage-sum")).to_contain_text("1,200")

    async def moved() -> bool:
        got = await api.get(f"/v1/deals/{deal['id']}", headers=owner.headers)
        return bool(got.json()["stage_id"] == qualified["id"])
    await eventually(moved, timeout=10, what="the stage change on the API")

    async def event() -> list[dict[str, Any]]:
        page_ = (await api.get("/v1/events?limit=1000", headers=owner.headers)).json()
        return [e for e in page_["data"] if e["event_type"] == "deal.stage.changed"
                and e["data"]["deal_id"] == deal["id"]]
    changed = await eventually(event, timeout=10, what="the deal.stage.changed event")
    assert changed[0]["data"]["from_stage_id"] == lead["id"]
    assert changed[0]["data"]["to_stage_id"] == qualified["id"]
    await expect(card).not_to_have_attribute("aria-busy", "true")
    await page.screenshot(path=screenshot_path("pipeline"), full_page=True)

    # At 375 px the page does not scroll sideways (only the board does).
    await page.set_viewport_size({"width": 375, "height": 740})
    await expect(_column(page, qualified)).to_be_visible()
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 375
    await page.screenshot(path=screenshot_path("pipeline-375"))


async def test_keyboard_move_and_a_refused_move_rolls_back(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    pipeline = await _pipeline(api, owner)
    won = pipeline["stages"][2]
    deal = await _deal(api, owner, pipeline, "Keyboard deal", 50)
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/pipeline/{pipeline['id']}")

    await page.get_by_label("Move Keyboard deal to").select_option(label="Won")
    await expect(_column(page, won)).to_contain_text("Keyboard deal")

    async def moved() -> bool:
        got = await api.get(f"/v1/deals/{deal['id']}", headers=owner.headers)
        return bool(got.json()["stage_id"] == won["id"])
    await eventually(moved, timeout=10, what="the keyboard move on the API")

    # The deal is deleted behind the board's back: the move is refused (404)
    # and the card goes back where it was, with an error toast.
    # The board's re-reads are cut off first, so the card stays on screen.
    async def offline(route: Route) -> None:
        await route.abort()
    await page.route(f"**/v1/pipelines/{pipeline['id']}/kanban", offline)
    resp = await api.delete(f"/v1/deals/{deal['id']}", headers=owner.headers)
    assert resp.status_code == 204
    await page.get_by_label("Move Keyboard deal to").select_option(label="Lead")
    await expect(page.locator(".toast.error", has_text="Could not move")).to_be_visible()
    await expect(_column(page, won)).to_contain_text("Keyboard deal")
    await expect(_column(page, won).locator(".stage-count")).to_have_text("1")


async def test_a_move_by_someone_else_shows_without_reload(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    pipeline = await _pipeline(api, owner)
    lead, won = pipeline["stages"][0], pipeline["stages"][2]
    deal = await _deal(api, owner, pipeline, "Moved elsewhere", 700)
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/pipeline/{pipeline['id']}")
    await expect(_column(page, lead)).to_contain_text("Moved elsewhere")
    await expect(page.locator(".live-state")).to_have_attribute("data-state", "live")
    marker = await page.evaluate("() => { window.__kept = 1; return window.__kept; }")

    resp = await api.patch(f"/v1/deals/{deal['id']}", headers=owner.headers,
                           json={"stage_id": won["id"]})
    assert resp.status_code == 200, resp.text
    await expect(_column(page, won)).to_contain_text("Moved elsewhere")
    await expect(_column(page, lead).locator(".stage-count")).to_have_text("0")

    await _deal(api, owner, pipeline, "Brand new", 5, stage=1)
    await expect(_column(page, pipeline["stages"][1])).to_contain_text("Brand new")
    assert await page.evaluate("() => window.__kept") == marker  # no reload happened


async def test_new_deal_form(page: Page, stack: Stack, api: httpx.AsyncClient,
                             owner: Account) -> None:
    pipeline = await _pipeline(api, owner)
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/pipeline/{pipeline['id']}")
    await page.get_by_role("button", name="New deal").click()
    form = page.get_by_role("form", name="New deal")
    await form.get_by_label("Title").fill("From the form")
    await form.get_by_label("Value").fill("250")
    await form.get_by_label("Stage").select_option(label="Qualified")
    await form.get_by_role("button", name="Create deal").click()
    await expect(_column(page, pipeline["stages"][1])).to_contain_text("From the form")
    found = (await api.get(f"/v1/deals?pipeline_id={pipeline['id']}",
                           headers=owner.headers)).json()["data"]
    assert [(d["name"], d["value"], d["stage_id"]) for d in found] == [
        ("From the form", 250.0, pipeline["stages"][1]["id"])]


async def test_contact_panel_edits_and_notes(page: Page, stack: Stack, api: httpx.AsyncClient,
                                             owner: Account) -> None:
    contact = (await api.post("/v1/contacts", headers=owner.headers, json={
        "first_name": "Grace", "email": "grace@example.com", "tags": ["vip"]})).json()
    company = (await api.post("/v1/companies", headers=owner.headers,
                              json={"name": "Navy Labs"})).json()
    pipeline = await _pipeline(api, owner)
    await _deal(api, owner, pipeline, "Compilers", 900, stage=1, contact_id=contact["id"])
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/contacts/{contact['id']}")
    panel = page.get_by_role("region", name="Contact")
    await expect(panel.get_by_label("First name")).to_have_value("Grace")
    await expect(panel).to_contain_text("Compilers")
    await expect(panel.locator(".deal-stage")).to_have_text("Qualified")

    await panel.get_by_label("Last name").fill("Hopper")
    await panel.get_by_label("Last name").press("Enter")
    await panel.get_by_label("Add a tag").fill("navy")
    await panel.get_by_role("button", name="Add tag").click()
    await expect(panel.locator(".tag", has_text="navy")).to_be_visible()
    await expect(panel.get_by_label("Add a tag")).to_have_value("")
    await panel.get_by_role("button", name="Remove tag vip").click()
    await expect(panel.locator(".tag", has_text="vip")).to_have_count(0)
    await panel.get_by_label("Company").select_option(label="Navy Labs")
    await panel.get_by_label("Add a note").fill("Met at the conference")
    await panel.get_by_role("button", name="Add note").click()
    await expect(panel.locator(".note")).to_contain_text("Met at the conference")
    await expect(panel.get_by_label("Add a note")).to_have_value("")

    async def saved() -> dict[str, Any] | None:
        resp = await api.get(f"/v1/contacts/{contact['id']}", headers=owner.headers)
        assert resp.status_code == 200, resp.text
        got = resp.json()
        done = (got["last_name"] == "Hopper" and got["tags"] == ["navy"]
                and got["company_id"] == company["id"])
        return got if done else None
    await eventually(saved, timeout=10, what="the contact's edits on the API")
    notes = (await api.get(f"/v1/contacts/{contact['id']}/notes", headers=owner.headers)).json()
    assert [n["body"] for n in notes] == ["Met at the conference"]

    # Someone else's change shows on the open panel (contact.updated).
    resp = await api.patch(f"/v1/contacts/{contact['id']}", headers=owner.headers,
                           json={"phone": "+1 555 0100"})
    assert resp.status_code == 200
    await expect(panel.get_by_label("Phone")).to_have_value("+1 555 0100")
    await page.set_viewport_size({"width": 375, "height": 740})
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 375
    await page.screenshot(path=screenshot_path("contact-375"), full_page=True)


async def test_settings_integration_api_key_and_invitation(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/settings/integrations")
    form = page.get_by_role("form", name="New API inbox")
    await form.get_by_label("Name").fill("Website backend")
    # An address the engine may not call: the 422 sits next to the field it names.
    await form.get_by_label("Callback URL").fill("http://10.1.2.3/hook")
    await form.get_by_role("button", name="Create API inbox").click()
    await expect(form.get_by_label("Callback URL")).to_have_attribute("aria-invalid", "true")
    listed = (await api.get("/v1/integrations", headers=owner.headers)).json()["data"]
    assert listed == []
    await form.get_by_label("Callback URL").fill("")
    await form.get_by_role("button", name="Create API inbox").click()
    secret = page.get_by_label("Signing secret of “Website backend”")
    await expect(secret).to_have_value(re.compile(r"^whsec_"))
    listed = (await api.get("/v1/integrations", headers=owner.headers)).json()["data"]
    assert [(i["type"], i["name"], i["is_active"]) for i in listed] == [
        ("api", "Website backend", True)]
    row = page.locator(f'li[data-integration-id="{listed[0]["id"]}"]')
    await row.get_by_label("Active").uncheck()
    await expect(page.locator(".toast", has_text="switched off")).to_be_visible()
    got = (await api.get(f"/v1/integrations/{listed[0]['id']}", headers=owner.headers)).json()
    assert got["is_active"] is False

    await page.get_by_role("navigation", name="Settings").get_by_role(
        "link", name="API keys").click()
    await expect(page.get_by_label("Signing secret", exact=False)).to_have_count(0)  # once
    keys = page.get_by_role("form", name="Create an API key")
    await keys.get_by_label("Name").fill("Reporting")
    assert await keys.get_by_label("crm:read").is_checked()
    assert not await keys.get_by_label("crm:write").is_checked()
    await keys.get_by_role("button", name="Create key").click()
    shown = page.get_by_label("API key “Reporting”")
    await expect(shown).to_have_value(re.compile(r"^bidi_"))
    key = await shown.input_value()
    reads = await api.get("/v1/contacts", headers={"X-API-Key": key})
    assert reads.status_code == 200, reads.text
    writes = await api.post("/v1/contacts", headers={"X-API-Key": key},
                            json={"first_name": "Nope"})
    assert writes.status_code == 403, writes.text
    await expect(page.locator(".settings-row", has_text="Reporting")).to_contain_text("crm:read")
    await page.reload()
    await expect(page.locator(".settings-row", has_text="Reporting")).to_be_visible()
    await expect(page.get_by_label("API key “Reporting”")).to_have_count(0)

    await page.goto(f"{stack.api_url}/#/settings/members")
    invite = page.get_by_role("form", name="Invite a member")
    await invite.get_by_label("Email").fill("newcomer@example.com")
    await invite.get_by_label("Role").select_option("viewer")
    await invite.get_by_role("button", name="Send invitation").click()
    link = page.get_by_label("Invitation link for newcomer@example.com")
    await expect(link).to_have_value(re.compile(rf"^{re.escape(stack.api_url)}/#/invite/."))
    pending = (await api.get("/v1/members/invitations", headers=owner.headers)).json()
    assert [(i["email"], i["role"]) for i in pending] == [("newcomer@example.com", "viewer")]
    await expect(page.locator(".settings-row", has_text="newcomer@example.com")).to_be_visible()
    await page.set_viewport_size({"width": 375, "height": 740})
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 375
    await page.screenshot(path=screenshot_path("settings-375"), full_page=True)


async def test_settings_agent_with_tools_and_autopilot(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    tools = (await api.get("/v1/agents/tools", headers=owner.headers)).json()
    assert {"send_message", "create_deal"} <= {t["name"] for t in tools}
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/settings/agents")
    await page.get_by_role("button", name="New agent").click()
    form = page.get_by_role("form", name="New agent")
    await form.get_by_label("Name", exact=True).fill("Closer")
    await form.get_by_label("Type").select_option("sdr")
    await form.get_by_label("create_deal").check()
    await form.get_by_label("Reply mode").select_option("autopilot")
    await form.get_by_label("Tool steps per run").fill("3")
    # Not a regular expression: the API's 422 sits next to the field it names.
    await form.get_by_label("Blocked patterns").fill("(unclosed")
    await form.get_by_role("button", name="Create agent").click()
    await expect(form.get_by_label("Blocked patterns")).to_have_attribute(
        "aria-invalid", "true")
    assert (await api.get("/v1/agents", headers=owner.headers)).json()["data"] == []
    await form.get_by_label("Blocked patterns").fill("")
    await form.get_by_role("button", name="Create agent").click()
    await expect(page.locator(".settings-row", has_text="Closer")).to_contain_text("autopilot")
    agents = (await api.get("/v1/agents", headers=owner.headers)).json()["data"]
    assert [(a["name"], a["type"], a["tools"], a["guardrails"]["mode"],
             a["guardrails"]["max_tool_steps"]) for a in agents] == [
        ("Closer", "sdr", ["create_deal"], "autopilot", 3)]
    await page.get_by_role("button", name="Runs of Closer").click()
    await expect(page.get_by_text("No runs yet.")).to_be_visible()


async def test_settings_member_role_change_and_removal(
        page: Page, stack: Stack, api: httpx.AsyncClient, owner: Account) -> None:
    other = await register(api, "Elsewhere")
    made = (await api.post("/v1/members/invitations", headers=owner.headers,
                           json={"email": other.email, "role": "viewer"})).json()
    joined = await api.post("/v1/invitations/accept", headers=other.headers,
                            json={"token": made["token"]})
    assert joined.status_code == 200, joined.text
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/settings/members")
    await page.get_by_label(f"Role of {other.email}").select_option("admin")
    await expect(page.locator(".toast", has_text="is now admin")).to_be_visible()

    async def role() -> str:
        listed = (await api.get("/v1/members", headers=owner.headers)).json()["data"]
        return str(next(m["role"] for m in listed if m["email"] == other.email))
    assert await role() == "admin"

    async def confirm(dialog: Dialog) -> None:
        await dialog.accept()
    page.once("dialog", confirm)
    row = page.locator(".settings-row", has_text=other.email)
    await row.get_by_role("button", name="Remove").click()
    await expect(row).to_have_count(0)
    listed = (await api.get("/v1/members", headers=owner.headers)).json()["data"]
    assert [m["email"] for m in listed] == [owner.email]


async def test_settings_connects_a_web_widget(page: Page, stack: Stack, api: httpx.AsyncClient,
                                              owner: Account) -> None:
    await sign_in(page, stack, owner)
    await page.goto(f"{stack.api_url}/#/settings/integrations")
    await page.get_by_label("Type").select_option("webchat")
    form = page.get_by_role("form", name="New Web widget")
    await form.get_by_label("Name").fill("Shop")
    origins = form.get_by_label("Allowed origins")
    await origins.fill("ftp://shop.example")  # not a web origin: refused beside the field
    await form.get_by_role("button", name="Create Web widget").click()
    await expect(origins).to_have_attribute("aria-invalid", "true")
    assert (await api.get("/v1/integrations", headers=owner.headers)).json()["data"] == []
    await origins.fill("https://Shop.Example\nhttps://www.shop.example:8443")
    await form.get_by_label("Verify visitors' identity").check()
    await form.get_by_role("button", name="Create Web widget").click()
    secret = page.get_by_label("Signing secret of “Shop”")
    await expect(secret).to_have_value(re.compile(r"^[0-9a-f]{64}$"))
    (made,) = (await api.get("/v1/integrations", headers=owner.headers)).json()["data"]
    assert made["type"] == "webchat"
    assert made["config"]["allowed_origins"] == ["https://shop.example",
                                                 "https://www.shop.example:8443"]
    assert made["config"]["identity_verification"] is True
    embed = page.get_by_label("Embed snippet")
    await expect(embed).to_have_value(re.compile(f'data-integration="{made["id"]}"'))
    await page.reload()
    await expect(page.locator(f'li[data-integration-id="{made["id"]}"]')).to_contain_text(
        "Web widget")
    await expect(page.get_by_label("Signing secret of “Shop”")).to_have_count(0)  # once

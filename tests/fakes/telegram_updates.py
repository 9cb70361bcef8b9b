"""Bot API Update objects exactly as Telegram sends them
(core.telegram.org/bots/api#update), built small: users, chats, and one
function per update shape the connector reads. Update and message ids rise
across the test process, as Telegram's do per bot and per chat."""
from __future__ import annotations

import itertools
from typing import Any

JSON = dict[str, Any]
DATE = 1_767_225_600  # 2026-01-01T00:00:00Z
_update_ids = itertools.count(500_000_001)
_message_ids = itertools.count(1)
_file_ids = itertools.count(1)


def user(user_id: int = 111_222_333, first_name: str = "Ada", last_name: str | None = None,
         username: str | None = None, language_code: str | None = "en") -> JSON:
    found: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
    for key, value in (("last_name", last_name), ("username", username),
                       ("language_code", language_code)):
        if value is not None:
            found[key] = value
    return found


def private_chat(of: JSON) -> JSON:
    chat = {"id": of["id"], "type": "private", "first_name": of["first_name"]}
    for key in ("last_name", "username"):
        if key in of:
            chat[key] = of[key]
    return chat


def group_chat(chat_id: int = -4_012_345_678, title: str = "Sales team",
               supergroup: bool = False, forum: bool = False) -> JSON:
    chat: JSON = {"id": chat_id, "title": title,
                  "type": "supergroup" if supergroup or forum else "group"}
    if forum:
        chat["is_forum"] = True
    if not supergroup and not forum:
        chat["all_members_are_administrators"] = True
    return chat


def channel_chat(chat_id: int = -1_001_987_654_321, title: str = "Bidi news",
                 username: str | None = "bidi_news") -> JSON:
    chat: JSON = {"id": chat_id, "title": title, "type": "channel"}
    if username:
        chat["username"] = username
    return chat


def message(chat: JSON, sender: JSON | None, text: str | None = None, **extra: Any) -> JSON:
    found: JSON = {"message_id": next(_message_ids)}
    if sender is not None:
        found["from"] = sender
    found |= {"chat": chat, "date": DATE}
    if text is not None:
        found["text"] = text
    return found | extra


def update(kind: str, payload: JSON, update_id: int | None = None) -> JSON:
    return {"update_id": next(_update_ids) if update_id is None else update_id, kind: payload}


def private_text(text: str = "Hello, do you ship to Lisbon?", sender: JSON | None = None,
                 **extra: Any) -> JSON:
    sender = sender or user(username="ada_l", last_name="Lovelace")
    return update("message", message(private_chat(sender), sender, text, **extra))


def group_texts(chat: JSON | None = None) -> list[JSON]:
    """Three people writing in one group, the last without username or last name."""
    chat = chat or group_chat()
    people = [user(201, "Grace", "Hopper", "grace"), user(202, "Alan", "Turing", "alan_t"),
              user(203, "Ляля", language_code=None)]
    return [update("message", message(chat, who, f"message {n} from {who['first_name']}"))
            for n, who in enumerate(people, 1)]


def edited_message(original: JSON, text: str, edit_date: int = DATE + 60) -> JSON:
    """An edit of the message an earlier update carried."""
    payload = dict(original["message"]) | {"text": text, "edit_date": edit_date}
    return update("edited_message", payload)


def photo(caption: str | None = "Our price list", sender: JSON | None = None) -> JSON:
    sender = sender or user()
    n = next(_file_ids)
    sizes = [{"file_id": f"AgACAgIAAxkBAAI{n}{size}", "file_unique_id": f"AQAD{n}{size}",
              "width": size, "height": size * 3 // 4, "file_size": size * 60}
             for size in (90, 320, 800, 1280)]
    extra: JSON = {"photo": sizes}
    if caption is not None:
        extra["caption"] = caption
    return update("message", message(private_chat(sender), sender, None, **extra))


def document(file_name: str = "invoice 42.pdf", file_id: str | None = None,
             size: int = 48_213, sender: JSON | None = None) -> JSON:
    sender = sender or user()
    n = next(_file_ids)
    doc = {"file_name": file_name, "mime_type": "application/pdf",
           "file_id": file_id or f"BQACAgIAAxkBAAI{n}", "file_unique_id": f"AgAD{n}",
           "file_size": size}
    return update("message", message(private_chat(sender), sender, None, document=doc))


def reply(to: JSON, text: str = "Yes, that one") -> JSON:
    original = to["message"]
    return update("message", message(original["chat"], original.get("from"), text,
                                     reply_to_message=original))


def callback_query(data: str = "plan:pro", sender: JSON | None = None,
                   bot: JSON | None = None) -> JSON:
    """A press on a button under a message of the bot's."""
    sender = sender or user()
    bot = bot or {"id": 7_000_000_001, "is_bot": True, "first_name": "Bidi",
                  "username": "bidi_test_bot"}
    markup = {"inline_keyboard": [[{"text": "Pro", "callback_data": data}]]}
    with_button = message(private_chat(sender), bot, "Which plan?", reply_markup=markup)
    query = {"id": f"4382bfdwdsb323b2d9{next(_file_ids)}", "from": sender,
             "message": with_button, "chat_instance": "-7151623381296284462", "data": data}
    return update("callback_query", query)


def my_chat_member(status: str = "kicked", of: JSON | None = None, chat: JSON | None = None,
                   old_status: str = "member") -> JSON:
    """The bot's membership changed (`kicked` in a private chat: blocked)."""
    of = of or user()
    bot = {"id": 7_000_000_001, "is_bot": True, "first_name": "Bidi",
           "username": "bidi_test_bot"}
    new: JSON = {"user": bot, "status": status}
    if status == "kicked":
        new["until_date"] = 0
    return update("my_chat_member", {"chat": chat or private_chat(of), "from": of,
                                     "date": DATE, "old_chat_member": {"user": bot,
                                                                       "status": old_status},
                                     "new_chat_member": new})


def topic_message(text: str = "Question about the demo", thread: int = 17,
                  chat: JSON | None = None, sender: JSON | None = None) -> JSON:
    chat = chat or group_chat(-1_002_233_445_566, "Support", forum=True)
    return update("message", message(chat, sender or user(), text, message_thread_id=thread,
                                     is_topic_message=True))


def channel_post(text: str = "New release is out", chat: JSON | None = None) -> JSON:
    chat = chat or channel_chat()
    return update("channel_post", message(chat, None, text, sender_chat=chat))

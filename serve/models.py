"""Request and response shapes shared by several routers."""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Request bodies: unknown fields refused, text that Postgres can store."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        _check_text(data, ())
        return data


def _check_text(value: Any, path: tuple[Any, ...]) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{'.'.join(map(str, path)) or 'value'}: NUL characters "
                             "are not allowed")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{'.'.join(map(str, path)) or 'value'}: not valid "
                             "Unicode text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path)
            _check_text(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, (*path, index))


class NoteIn(Strict):
    body: str = Field(min_length=1, max_length=100_000)


class NoteOut(BaseModel):
    id: UUID
    body: str
    author_id: UUID | None
    contact_id: UUID | None
    deal_id: UUID | None
    created_at: datetime | None

"""`?page=&limit=` in, `{"page","limit","total","data"}` out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

T = TypeVar("T")
MAX_LIMIT = 100


@dataclass(frozen=True)
class PageParams:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


async def page_params(page: int = Query(1, ge=1, le=100_000),
                limit: int = Query(20, ge=1, le=MAX_LIMIT)) -> PageParams:
    return PageParams(page, limit)


class Page(BaseModel, Generic[T]):
    page: int
    limit: int
    total: int
    data: list[T]

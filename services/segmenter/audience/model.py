"""Audience definitions as the API and the broker accept them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

SegmentName = Literal["all_customers"]


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment: SegmentName = "all_customers"
    exclude_suppressed: bool = True

    @property
    def provides_appointment(self) -> bool:
        return False

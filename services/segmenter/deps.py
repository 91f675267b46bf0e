"""FastAPI dependencies of the segmenter, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.segmenter.campaigns import Lifecycle
from shared.broker import Publisher
from shared.crypto import SecretBox
from shared.settings import Settings


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


def _box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


def _lifecycle(request: Request) -> Lifecycle:
    lifecycle: Lifecycle = request.app.state.lifecycle
    return lifecycle


SettingsDep = Annotated[Settings, Depends(_settings)]
PublisherDep = Annotated[Publisher, Depends(_publisher)]
SecretBoxDep = Annotated[SecretBox, Depends(_box)]
LifecycleDep = Annotated[Lifecycle, Depends(_lifecycle)]

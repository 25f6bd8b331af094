"""The port every channel type implements, and the registry that finds one by name.

A channel type is one small module: a pydantic settings model (secrets listed by name, so they can
be encrypted at rest and hidden from the API) and `send(message, settings, context)`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict

from pingtower.common.egress import Networks, guarded_session


@dataclass(frozen=True)
class Message:
    """A rendered notification: what every channel type turns into its own wire format."""

    kind: str
    title: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendContext:
    delivery_id: str
    allow_private: bool
    timeout_seconds: float = 15.0
    allow_networks: Networks = ()  # reachable even when private addresses are not

    def http(self) -> aiohttp.ClientSession:
        """The only way a channel reaches a user-given address: the guarded client."""
        return guarded_session(
            allow_private=self.allow_private,
            allow_networks=self.allow_networks,
            timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
        )


@dataclass(frozen=True)
class SendResult:
    status_code: int | None = None
    detail: str = ""


class ChannelError(Exception):
    """A failed send. `permanent` failures (a 4xx answer, a refused address) are not retried."""

    def __init__(
        self, message: str, *, status_code: int | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.permanent = permanent


class ChannelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Fields holding secrets: encrypted at rest, write-only in the API, never logged.
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()
    # Fields holding a user-given URL or host the channel connects to: the egress policy judges
    # them when the channel is saved (and again at every connect).
    ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ()

    def addresses(self) -> list[tuple[str, str]]:
        """(field, URL or host) of every address this channel reaches."""
        return [(name, str(getattr(self, name))) for name in self.ADDRESS_FIELDS]


class ChannelType(abc.ABC):
    name: ClassVar[str]
    settings_model: ClassVar[type[ChannelSettings]]

    @abc.abstractmethod
    async def send(
        self, message: Message, settings: ChannelSettings, context: SendContext
    ) -> SendResult:
        """Deliver or raise ChannelError."""


REGISTRY: dict[str, ChannelType] = {}


def register(factory: Callable[[], ChannelType]) -> Callable[[], ChannelType]:
    channel = factory()
    REGISTRY[channel.name] = channel
    return factory


def channel_type(name: str) -> ChannelType:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown channel type {name!r}") from None

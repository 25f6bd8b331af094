"""What the API handlers share: sessions, the secret box, settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pingtower.common.settings import Settings
from pingtower.notificator.secrets import SecretBox


@dataclass(frozen=True)
class ApiDeps:
    sessions: async_sessionmaker[AsyncSession]
    box: SecretBox
    settings: Settings

"""Channel types, registered by name on import."""

# Importing a channel module registers its type.
from pingtower.notificator.channels import apprise_urls as _apprise  # noqa: F401
from pingtower.notificator.channels import chat as _chat  # noqa: F401
from pingtower.notificator.channels import email as _email  # noqa: F401
from pingtower.notificator.channels import sms as _sms  # noqa: F401
from pingtower.notificator.channels import telegram as _telegram  # noqa: F401
from pingtower.notificator.channels import webhook as _webhook  # noqa: F401
from pingtower.notificator.channels.base import (
    REGISTRY,
    ChannelError,
    ChannelSettings,
    ChannelType,
    Message,
    SendContext,
    SendResult,
    channel_type,
)

__all__ = [
    "REGISTRY",
    "ChannelError",
    "ChannelSettings",
    "ChannelType",
    "Message",
    "SendContext",
    "SendResult",
    "channel_type",
]

"""Client stream sockets as the HTTP and TCP checks use them: made non-blocking, and closed with
a reset once the check is over."""

from __future__ import annotations

import contextlib
import socket
import struct

_LINGER_RESET = struct.pack("ii", 1, 0)
# A socket created non-blocking: one system call fewer than setblocking(False) (Linux only).
_STREAM = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)


def nonblocking_stream(family: int) -> socket.socket:
    sock = socket.socket(family, _STREAM)
    if _STREAM == socket.SOCK_STREAM:  # no SOCK_NONBLOCK on this platform
        sock.setblocking(False)
    return sock


def reset_on_close(sock: socket.socket) -> None:
    """Makes the socket's close a reset (SO_LINGER 0): the check is over, and a normal close
    would leave the socket in TIME_WAIT for a minute on our side whenever we close first."""
    with contextlib.suppress(OSError):  # the peer's reset came first: nothing is left to linger
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)

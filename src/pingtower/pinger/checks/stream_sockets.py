"""Client stream sockets as the HTTP and TCP checks use them: made non-blocking, and closed with
a reset once the check is over."""

from __future__ import annotations

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


def bare_nonblocking_stream(family: int) -> socket.SocketType:
    """A non-blocking stream socket of the built-in type, without `socket.socket`'s Python
    layer (its __init__ and close were 1.5 µs per check): for a socket driven by its own
    system calls, as the HTTP client's plain hop; the event loops' socket methods are typed
    for `socket.socket` (the TCP check's conversation uses them)."""
    sock = socket.SocketType(family, _STREAM)
    if _STREAM == socket.SOCK_STREAM:
        sock.setblocking(False)
    return sock


def reset_on_close(sock: socket.SocketType) -> None:
    """Makes the socket's close a reset (SO_LINGER 0): the check is over, and a normal close
    would leave the socket in TIME_WAIT for a minute on our side whenever we close first."""
    try:  # noqa: SIM105 - contextlib.suppress cost a microsecond per check
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:  # the peer's reset came first: nothing is left to linger
        pass

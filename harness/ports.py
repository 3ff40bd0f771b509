"""Free loopback ports for services started by the harness."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks the port, so parallel test runs do not collide on a fixed
    number; the small race between closing this socket and the service binding it
    is accepted, because every service here is started once per test session.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

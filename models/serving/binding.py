"""Where the server listens, and the rule that keeps it private: loopback unless a key is set."""

from __future__ import annotations

import ipaddress

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8642


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Raise ``ValueError`` when ``host`` would expose the server without an API key."""
    if not is_loopback(host) and not api_key:
        raise ValueError(
            f"Serving on {host} makes the model reachable from other machines; give an API key "
            "(--api-key) or bind to 127.0.0.1."
        )

"""Byte counts for people, in decimal units (1 GB = 10^9 bytes, as macOS and the Hub count)."""

from __future__ import annotations

GB = 1_000_000_000


def format_bytes(n: float | None, missing: str = "?") -> str:
    """'512 B', '1.5 KB', '4.2 MB', '61.2 GB', '1.1 TB'; ``missing`` for None."""
    if n is None:
        return missing
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_memory(n: float) -> str:
    """Memory in a plan: '61.2 GB', whole megabytes from 10 MB to 0.95 GB ('412 MB'), and below
    that as ``format_bytes`` says it ('1.4 MB', never '0 MB')."""
    if abs(n) >= 0.95 * GB:
        return f"{n / GB:.1f} GB"
    return f"{n / 1e6:.0f} MB" if abs(n) >= 10e6 else format_bytes(n)

"""Horizontal sharding (docs/reference.md, Sharding): each (source, tenant) pair belongs to one shard."""

from __future__ import annotations

import hashlib
from collections.abc import Callable


def shard_of(source: str, tenant: str, total: int) -> int:
    """The shard that owns (source, tenant): a hash that is the same on every machine."""
    digest = hashlib.sha256(f"{source}\x1f{tenant}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


def tenant_owner(source: str, index: int, total: int) -> Callable[[str], bool]:
    """The predicate a source's lane is handed: does this shard own that tenant of the source?"""
    if total == 1:
        return lambda tenant: True
    return lambda tenant: shard_of(source, tenant, total) == index

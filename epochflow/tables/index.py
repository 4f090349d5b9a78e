"""Key indexes: under one name (`active|p0`, `holders|price|S1|p3`, ...), the keys of a
partition to visit when something happens. One value per name, keys in the order they
joined."""

from __future__ import annotations

from dataclasses import dataclass

from epochflow.tables.store import Store


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: tuple[str, ...] = ()


def keys_of(index: Store[KeySet], name: str) -> tuple[str, ...]:
    found = index.get(name)
    return found.keys if found is not None else ()


def add_key(index: Store[KeySet], name: str, key: str) -> None:
    current = index.get(name) or KeySet()
    if key not in current.keys:
        index.put(name, KeySet((*current.keys, key)))


def remove_key(index: Store[KeySet], name: str, key: str) -> None:
    current = index.get(name)
    if current is not None and key in current.keys:
        index.put(name, KeySet(tuple(k for k in current.keys if k != key)))

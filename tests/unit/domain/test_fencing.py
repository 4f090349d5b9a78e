"""Fencing (DESIGN.md: "Any event or job whose epoch is older than the key's current epoch
is dropped and counted"): each rule, case by case, and the places that apply it."""

from __future__ import annotations

from datetime import date

import pytest

from epochflow.domain.fencing import (
    advance_fenced,
    answer_is_stale,
    is_news,
    is_stale,
    opens_epoch,
    reset_fenced,
    same_generation,
    supersedes,
)

STALE = {
    # name: (epoch, key epoch, stale, opens a newer epoch)
    "older-epoch": (1, 2, True, False),
    "same-epoch": (2, 2, False, False),
    "newer-epoch": (3, 2, False, True),
    "first-epoch": (0, 0, False, False),
}


@pytest.mark.parametrize("epoch,key_epoch,stale,opens", [pytest.param(*c, id=n) for n, c in STALE.items()])
def test_is_stale_and_opens_epoch(epoch, key_epoch, stale, opens) -> None:
    assert is_stale(epoch, key_epoch) is stale
    assert opens_epoch(epoch, key_epoch) is opens


ADVANCES = {
    # name: (epoch, generation, key epoch, key generation, reason or None)
    "same-epoch-and-generation": (2, 5, 2, 5, None),
    "older-epoch": (1, 5, 2, 5, "advance for epoch 1, key is at 2"),
    "newer-epoch": (3, 5, 2, 5, "advance for epoch 3, key is at 2"),  # never ahead of the key: dropped too
    "older-generation": (2, 4, 2, 5, "advance from reset generation 4, key is at 5"),
    "epoch-checked-first": (1, 4, 2, 5, "advance for epoch 1, key is at 2"),
}


@pytest.mark.parametrize("epoch,generation,key_epoch,key_generation,reason",
                         [pytest.param(*c, id=n) for n, c in ADVANCES.items()])
def test_advance_fenced(epoch, generation, key_epoch, key_generation, reason) -> None:
    assert advance_fenced(epoch, generation, key_epoch, key_generation) == reason


RESETS = {
    # name: (epoch or None, key epoch, reason or None)
    "scheduler-same-epoch": (2, 2, None),
    "scheduler-newer-epoch": (3, 2, None),
    "scheduler-older-epoch": (1, 2, "reset for epoch 1, key is at 2"),
    "fan-out-any-epoch": (None, 7, None),
}


@pytest.mark.parametrize("epoch,key_epoch,reason", [pytest.param(*c, id=n) for n, c in RESETS.items()])
def test_reset_fenced(epoch, key_epoch, reason) -> None:
    assert reset_fenced(epoch, key_epoch) == reason


NEWS = {
    # name: ((epoch, version), (seen epoch, seen version), news)
    "later-version": ((1, 5), (1, 4), True),
    "same-version": ((1, 4), (1, 4), False),
    "earlier-version": ((1, 3), (1, 4), False),
    "newer-epoch-lower-version": ((2, 1), (1, 9), True),
    "older-epoch-higher-version": ((0, 9), (1, 1), False),
}


@pytest.mark.parametrize("view,seen,news", [pytest.param(*c, id=n) for n, c in NEWS.items()])
def test_is_news(view, seen, news) -> None:
    assert is_news(*view, *seen) is news


GENERATIONS = {
    # name: ((epoch, generation) planned under, (epoch, generation) now, jobs stand)
    "unchanged": ((1, 3), (1, 3), True),
    "reset": ((1, 3), (1, 4), False),
    "new-epoch": ((1, 3), (2, 3), False),
}


@pytest.mark.parametrize("planned,now,stand", [pytest.param(*c, id=n) for n, c in GENERATIONS.items()])
def test_same_generation(planned, now, stand) -> None:
    assert same_generation(*planned, *now) is stand


ANSWERS = {
    # name: (answer epoch, answer job version, key epoch, version in flight or None, stale)
    "the-dispatch-in-flight": (1, 7, 1, 7, False),
    "another-epoch": (0, 7, 1, 7, True),
    "a-newer-epoch-than-the-key": (2, 7, 1, 7, True),
    "superseded-dispatch": (1, 6, 1, 7, True),
    "job-not-processing": (1, 7, 1, None, True),
}


@pytest.mark.parametrize("epoch,version,key_epoch,in_flight,stale", [pytest.param(*c, id=n) for n, c in ANSWERS.items()])
def test_answer_is_stale(epoch, version, key_epoch, in_flight, stale) -> None:
    assert answer_is_stale(epoch, version, key_epoch, in_flight) is stale


SUPERSEDES = {
    # name: (incoming fence, stored fence, replaces)
    "transaction-same-epoch-amendment": ((1,), (1,), True),
    "transaction-newer-epoch": ((2,), (1,), True),
    "transaction-older-epoch": ((0,), (1,), False),
    "state-newer-version": ((1, 5), (1, 4), True),
    "state-same": ((1, 4), (1, 4), True),
    "state-older-version": ((1, 3), (1, 4), False),
    "state-newer-epoch-lower-version": ((2, 1), (1, 9), True),
    "state-older-epoch-higher-version": ((0, 9), (1, 1), False),
    "job-version": ((3,), (4,), False),
    "dates-compare-too": ((date(2025, 1, 2),), (date(2025, 1, 1),), True),
}


@pytest.mark.parametrize("incoming,stored,replaces", [pytest.param(*c, id=n) for n, c in SUPERSEDES.items()])
def test_supersedes(incoming, stored, replaces) -> None:
    assert supersedes(incoming, stored) is replaces

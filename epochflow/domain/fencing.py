"""Fencing: is this event, job, command, answer or row stale for the key's state?

A key's epoch changes when its history is replayed (a back-dated transaction); its reset
generation changes when its watermark moves back in the same epoch. Whatever was computed
under an older epoch (or generation, for the scheduler's advances) is dropped, and
counted where it arrives. Every role that fences asks these functions; the sink's SQL
states the same `supersedes` rule in its WHERE clauses (see `sinks.writer`).
"""

from __future__ import annotations


def is_stale(epoch: int, key_epoch: int) -> bool:
    """An event, job or row of an epoch older than the key's: dropped and counted."""
    return epoch < key_epoch


def opens_epoch(epoch: int, key_epoch: int) -> bool:
    """Something of a newer epoch than the holder's copy of the key: the copy of the older
    epoch no longer counts (what the new epoch keeps is sent again, or carried over)."""
    return epoch > key_epoch


def advance_fenced(epoch: int, generation: int, key_epoch: int, key_generation: int) -> str | None:
    """Why the scheduler's watermark advance must not apply (None: it applies). An advance
    is computed from one epoch and one reset generation: after a replay or a reset the days
    it vouches for are no longer the ones it valued."""
    if epoch != key_epoch:
        return f"advance for epoch {epoch}, key is at {key_epoch}"
    if generation != key_generation:
        return f"advance from reset generation {generation}, key is at {key_generation}"
    return None


def reset_fenced(epoch: int | None, key_epoch: int) -> str | None:
    """Why a watermark reset must not apply (None: it applies). The scheduler's resets name
    their epoch; the fan-out's (epoch None) apply to whatever epoch the key is at."""
    if epoch is not None and is_stale(epoch, key_epoch):
        return f"reset for epoch {epoch}, key is at {key_epoch}"
    return None


def is_news(epoch: int, version: int, seen_epoch: int, seen_version: int) -> bool:
    """A view of a key's state (its epoch and state version) tells something new only when
    it is later than the one already seen; an older or repeated one is ignored."""
    return (epoch, version) > (seen_epoch, seen_version)


def same_generation(epoch: int, generation: int, key_epoch: int, key_generation: int) -> bool:
    """Jobs planned under (epoch, generation) still stand for a key now at (key_epoch,
    key_generation); a new epoch or a reset drops them."""
    return epoch == key_epoch and generation == key_generation


def answer_is_stale(epoch: int, job_version: int, key_epoch: int, in_flight_version: int | None) -> bool:
    """A valuation answer counts only for the key's epoch and for the dispatch still in
    flight (`in_flight_version`, None when the job is not PROCESSING): the answer to a
    dispatch that was reclaimed or superseded is stale."""
    return epoch != key_epoch or in_flight_version is None or job_version != in_flight_version


def supersedes(incoming: tuple, stored: tuple) -> bool:
    """The sink's rule: a row replaces the stored one when its fence, (epoch,), (epoch,
    version) or (version,), is greater or equal (equal: an amendment in the same epoch, or a
    re-delivery, which changes nothing)."""
    return incoming >= stored

"""Every key shape, built and read in one place.

| shape | example | what it names |
|---|---|---|
| PORTFOLIO\\|SECURITY | `P1|S1` | a position: key-scoped topics, position_state, schedule_keys, valuation_keys |
| price\\|SECURITY | `price|S1` | a price series; a fan-out subject; what a job waits on |
| fx\\|FROM\\|TO | `fx|EUR|USD` | an FX rate series; a fan-out subject; what a job waits on |
| portfolio\\|ID | `portfolio|P1` | a portfolio a job (or a key's costing) waits on |
| cost\\|ID | `cost|P1` | base-currency cost that waits for an FX rate at a trade date |
| KEY\\|PART | `P1|S1|2025-06-02` | one of a key's records: history bucket, transaction ref, cache chunk |
| NAME...\\|pN | `active|p0`, `holders|price|S1|p3` | a record of partition N: indexes, counters, fan-out subjects |
| SUBJECT#pN#n | `price|S1#p3#2` | the n-th RESET_WATERMARKS job of a subject on partition N |

A security id may itself contain `|`: a position key splits at the first bar, a price
subject keeps everything after `price|`.
"""

from __future__ import annotations

from datetime import date

SEP = "|"


# ---- positions -------------------------------------------------------------------------

def position_key(portfolio_id: str, security_id: str) -> str:
    return f"{portfolio_id}{SEP}{security_id}"


def split_position_key(key: str) -> tuple[str, str]:
    portfolio_id, security_id = key.split(SEP, 1)
    return portfolio_id, security_id


def record_key(key: str, part: object) -> str:
    """One of a key's records (a history bucket, a transaction ref, a cache chunk)."""
    return f"{key}{SEP}{part}"


# ---- subjects: what reference data a number depends on ---------------------------------

def price_subject(security_id: str) -> str:
    return f"price{SEP}{security_id}"


def fx_subject(from_currency: str, to_currency: str) -> str:
    return f"fx{SEP}{from_currency}{SEP}{to_currency}"


def portfolio_subject(portfolio_id: str) -> str:
    return f"portfolio{SEP}{portfolio_id}"


def cost_subject(portfolio_id: str) -> str:
    return f"cost{SEP}{portfolio_id}"


def subject_kind(subject: str) -> str:
    """`price`, `fx`, `portfolio` or `cost`."""
    return subject.split(SEP, 1)[0]


def describe_subject(subject: str) -> tuple[str | None, str | None, str | None]:
    """(security_id, from_currency, to_currency) of a price or FX subject."""
    kind, _, rest = subject.partition(SEP)
    if kind == "price":
        return rest, None, None
    from_currency, _, to_currency = rest.partition(SEP)
    return None, from_currency, to_currency


def price_currency_tag(security_id: str, day: date) -> str:
    """The currency a price of `day` was quoted in."""
    return f"pricecur{SEP}{security_id}{SEP}{day.isoformat()}"


# ---- records of one partition ----------------------------------------------------------

def partition_record(partition: int, *parts: str) -> str:
    """`parts` joined, scoped to a partition: `partition_record(0, "wait", "price|S1")` is
    `wait|price|S1|p0`."""
    return SEP.join((*parts, f"p{partition}"))


def record_partition(name: str) -> int:
    """The partition of a `partition_record` name."""
    return int(name.rsplit(f"{SEP}p", 1)[1])


# ---- jobs ------------------------------------------------------------------------------

def reset_job_id(subject: str, partition: int, number: int) -> str:
    return f"{subject}#p{partition}#{number}"

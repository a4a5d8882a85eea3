"""Erasing a user from the activity log: its rows stay (every figure over them stays the same),
unlinked from the user. The store's erasure (:meth:`SqliteStore.forget`) runs it in its transaction;
the activity log uses what it did for the records of sends still on their way."""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass, field

__all__ = ["Anonymized", "anonymize"]


@dataclass(frozen=True)
class Anonymized:
    """What :func:`anonymize` did: how many rows, under which anonymous id, which send_ids it replaced."""

    rows: int
    user: str
    send_ids: dict[str, str] = field(default_factory=dict)  # old → new


def anonymize(db: sqlite3.Connection, user: str) -> Anonymized:
    """Unlink a user's activity rows from the user, inside the caller's transaction (an erasure).

    The rows stay, so every figure over them stays the same; what could point back to the user
    is replaced:

    - ``user_id`` becomes one anonymous id, random and new for each erasure (not derived from the
      user id, so it cannot be recomputed), the same on all the user's rows: a count of distinct
      users is unchanged, and nothing joins the rows to anybody.
    - ``send_id`` becomes a random id per distinct send_id. A send_id is a hash of the campaign,
      the user id and the trigger instant, so whoever knows the user id could recompute it and find
      the rows again; fresh random ids keep what the figures rely on (which rows share a send: a
      view and a click count their send once, a conversion of a control decision is found by its
      send_id) and drop the link.
    - ``at``, ``campaign``, ``outcome``, ``reason``, ``revenue``, ``status``, ``attempts`` and
      ``platform`` are kept: the figures and their series read them, and none names the user
      (reasons are fixed codes such as ``subscription_gone``; titles, bodies and urls are not
      logged here).

    Does nothing when the file has no activity table (a store a replay wrote). The anonymous id and
    the new send_ids are for :meth:`ActivityLog.rename` only (a record still to come of a send that
    was being delivered): shown or logged next to the user id, they would link the rows back.
    """
    anonymous = "erased-" + secrets.token_hex(8)
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'activity'").fetchone() is None:
        return Anonymized(0, anonymous)
    send_ids = [row[0] for row in db.execute(
        "SELECT DISTINCT send_id FROM activity WHERE user_id = ? AND send_id IS NOT NULL", (user,))]
    renamed = {send_id: secrets.token_hex(12) for send_id in send_ids}
    db.executemany("UPDATE activity SET send_id = ? WHERE send_id = ? AND user_id = ?",
                   [(new, old, user) for old, new in renamed.items()])
    rows = db.execute("UPDATE activity SET user_id = ? WHERE user_id = ?", (anonymous, user)).rowcount
    return Anonymized(rows, anonymous, renamed)

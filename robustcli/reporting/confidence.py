"""The rows every face shows of a pick's confidence (`robust select`'s table, the report's page):
kept in one place so the terminal and the page can never disagree. Light: no numpy, no MLflow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["confidence_rows"]


def confidence_rows(
    p_best: Mapping[str, float],
    indistinguishable: Iterable[str],
    more_instances: Mapping[str, int | None],
    pick: str,
) -> list[tuple[str, float, bool, str]]:
    """``(candidate, P(best), indistinguishable, more instances to separate)`` for every candidate
    with a chance of being the best or that the data cannot tell from the pick, likeliest first
    (ties by id). The last cell is ``-`` for the pick and for a candidate told apart, ``never``
    where no number of instances would separate it, else ``+N``."""
    indist = set(indistinguishable)
    rows = []
    for cid, p in sorted(p_best.items(), key=lambda kv: (-kv[1], kv[0])):
        if p <= 0 and cid not in indist:
            continue
        if cid == pick or cid not in indist:
            sep = "-"
        else:
            sep = "never" if more_instances.get(cid) is None else f"+{more_instances[cid]}"
        rows.append((cid, float(p), cid in indist, sep))
    return rows

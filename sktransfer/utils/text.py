"""Lists inside messages: the first few items, then how many were left out."""

from __future__ import annotations


def listed(items, limit=10, sep=", ", show=str):
    """``items`` joined by ``sep``, the first ``limit`` of them, then "and N more".

    Parameters
    ----------
    items : iterable
        What to list.
    limit : int, default=10
        How many items to show.
    sep : str, default=", "
        Put between two items.
    show : callable, default=str
        How an item is written.

    Returns
    -------
    str
        For example ``"3, 7, 9 and 12 more"``.
    """
    items = list(items)
    shown = sep.join(show(item) for item in items[:limit])
    if len(items) > limit:
        # "a, b and 3 more", but "a; b; and 3 more": a separator other than a comma stays
        tail = "" if sep.strip() == "," else sep.rstrip()
        shown += f"{tail} and {len(items) - limit} more"
    return shown

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
        shown += f"{sep.rstrip() if sep.strip() != ',' else ''} and {len(items) - limit} more"
    return shown

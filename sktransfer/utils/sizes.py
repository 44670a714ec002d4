"""Sizes in bytes as people write them (``500M``, ``2G``), for the environment's settings."""


def parse_bytes(text):
    """``"500M"``, ``"2G"``, ``"1.5GiB"``, ``"1000"`` -> a number of bytes.

    Raises
    ------
    ValueError
        Naming the text and the accepted forms.
    """
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in units else ""
    try:
        value = float(t[:len(t) - len(unit)])
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{text!r} is not a size; use bytes or a number with K, M, G or T "
                         "(e.g. 500M, 2G).")
    return int(value * units[unit])

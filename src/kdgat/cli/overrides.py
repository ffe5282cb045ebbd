"""``key=value`` arguments for subcommands, checked against the keys a command accepts."""

from __future__ import annotations

import difflib


def parse_key_values(items: list[str], accepted: dict[str, type]) -> dict:
    """Parse ``["dataset=hcrl_sa", "window=50"]`` into typed values.

    Raises:
        ValueError: an item is not ``key=value``, the key is unknown (with a did-you-mean and the
            accepted keys), or the value does not convert to the key's type.
    """
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}; accepted keys: {sorted(accepted)}")
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown key {key!r}{hint}; accepted keys: {sorted(accepted)}")
        try:
            values[key] = accepted[key](value)
        except ValueError:
            raise ValueError(f"{key}={value!r}: expected a value of type {accepted[key].__name__}") from None
    return values

"""A typed answer written in an email: ``Name: value`` lines, as people write forms in plain text.

Names are matched loosely (case, spaces, underscores and dashes ignored; the field's name or its title), a line
may start with a bullet, and a long-text field's value goes on over the lines that follow it. A schema of one
property takes the whole reply as its value when no line names it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.forms.fields import FormField

_LINE = re.compile(r"^\s*(?:[-*•]\s+)?([^:=\n]{1,100}?)\s*[:=]\s?(.*)$")
_CONTINUES = frozenset({"textarea", "lines", "json"})


def _key(text: str) -> str:
    return re.sub(r"[\s_\-.]+", "", text.casefold())


def read_lines(fields: Sequence[FormField], text: str) -> dict[str, str]:
    """The raw value given for each field the reply names (strings, as a form would send them)."""
    by_key: dict[str, FormField] = {}
    for field in fields:
        by_key.setdefault(_key(field.name), field)
        by_key.setdefault(_key(field.label), field)
    found: dict[str, list[str]] = {}
    current: FormField | None = None
    for line in text.splitlines():
        match = _LINE.match(line)
        named = by_key.get(_key(match.group(1))) if match else None
        if match and named is not None:
            current = named
            found.setdefault(named.name, []).append(match.group(2).strip())
        elif current is not None and current.widget in _CONTINUES and current.name in found:
            found[current.name].append(line.rstrip())
        elif line.strip():
            current = None
    values = {name: "\n".join(parts).strip() for name, parts in found.items()}
    if len(fields) == 1 and not values and text.strip():
        values[fields[0].name] = text.strip()
    return values

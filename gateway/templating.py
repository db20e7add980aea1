"""Jinja2 for mails and pages: HTML autoescaped, GATEWAY_TEMPLATES_DIR first, then the built-in set.

Everything an agent sends (function name, arguments, context, question) reaches templates as data and is
escaped; nothing is marked safe.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

FOLD_AT = 2000


def builtin_templates_dir() -> Path:
    """Inside an installed wheel the templates live in gateway/_templates; in a checkout, in ./templates."""
    packaged = Path(__file__).parent / "_templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


def pretty(value: Any) -> str:
    """A readable rendering of one argument: strings as they are, everything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def fold(text: str, limit: int = FOLD_AT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit} more characters)"


def is_multiline(value: Any) -> bool:
    return not isinstance(value, str) or "\n" in value or len(value) > 80


def when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def indent_text(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def make_environment(override: Path | None = None) -> Environment:
    loaders = [FileSystemLoader(str(override))] if override else []
    loaders.append(FileSystemLoader(str(builtin_templates_dir())))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml"), default_for_string=True, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # Templates are read once per process; checking their files' mtimes on every mail cost ~5% of a submit.
        auto_reload=False,
    )
    env.filters.update(pretty=pretty, fold=fold, when=when, indent_text=indent_text)
    env.tests["multiline"] = is_multiline
    return env

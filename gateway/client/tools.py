"""Tool definitions for LLM tool calling: the human tool, and any (gated) function, for OpenAI and Anthropic.

A function's JSON schema comes from its signature and type hints (through pydantic), its description from its
docstring; ``functools.wraps`` on gated functions keeps both, so a gated tool describes itself like the original.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, create_model

HUMAN_TOOL_DESCRIPTION = (
    "Ask a human a question by email and wait for their answer. Use it when you are stuck, need a judgement "
    "call, or need information only the human has. The answer comes back as text."
)


class HumanTool:
    """A callable (sync or async, as its gateway) that asks a human; carries its own tool definition."""

    def __init__(self, ask: Callable[[str], Any], *, name: str = "ask_human", description: str | None = None) -> None:
        self._ask = ask
        self.name = self.__name__ = name
        self.description = self.__doc__ = description or HUMAN_TOOL_DESCRIPTION
        self.parameters: dict[str, Any] = {
            "type": "object",
            "properties": {
                "message": {
                    "type": "string",
                    "description": "The question for the human, with the context they need to answer it.",
                }
            },
            "required": ["message"],
            "additionalProperties": False,
        }
        self.is_async = inspect.iscoroutinefunction(ask)

    def __call__(self, message: str) -> Any:
        return self._ask(message)

    def openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def anthropic(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.parameters}


def parameters_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of a function's parameters (``*args`` and ``**kwargs`` are left out)."""
    if isinstance(fn, HumanTool):
        return fn.parameters
    fields: dict[str, Any] = {}
    hints = _hints(fn)
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        annotation = hints.get(name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (annotation, default)
    model = create_model(f"{fn.__name__}_args", __config__=ConfigDict(extra="forbid"), **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        import typing

        return typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to untyped parameters
        return {}


def _describe(fn: Callable[..., Any]) -> tuple[str, str]:
    name = getattr(fn, "name", None) or fn.__name__
    return name, inspect.getdoc(fn) or name


def openai_tool(fn: Callable[..., Any]) -> dict[str, Any]:
    """An OpenAI Chat Completions tool definition for ``fn`` (a gated function, any function, or a HumanTool)."""
    name, description = _describe(fn)
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters_schema(fn)},
    }


def anthropic_tool(fn: Callable[..., Any]) -> dict[str, Any]:
    """An Anthropic Messages tool definition for ``fn``."""
    name, description = _describe(fn)
    return {"name": name, "description": description, "input_schema": parameters_schema(fn)}


def openai_tools(*fns: Callable[..., Any]) -> list[dict[str, Any]]:
    return [openai_tool(fn) for fn in fns]


def anthropic_tools(*fns: Callable[..., Any]) -> list[dict[str, Any]]:
    return [anthropic_tool(fn) for fn in fns]

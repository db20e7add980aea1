"""LangChain tools from gated functions and the human tool (``pip install 'gateway[langchain]'``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from langchain_core.tools import StructuredTool

from gateway.client.tools import HumanTool


def as_langchain_tool(fn: Callable[..., Any]) -> StructuredTool:
    """A LangChain ``StructuredTool`` that calls ``fn``: sync or async, named and described as ``fn`` is.

    A gated function keeps its gate: the tool's call waits for the human like a direct call does.
    """
    if isinstance(fn, HumanTool):
        name, description, is_async = fn.name, fn.description, fn.is_async

        def ask(message: str) -> Any:
            return fn(message)

        async def ask_async(message: str) -> Any:
            return await fn(message)

        if is_async:
            return StructuredTool.from_function(coroutine=ask_async, name=name, description=description)
        return StructuredTool.from_function(func=ask, name=name, description=description)
    description = inspect.getdoc(fn) or fn.__name__
    if inspect.iscoroutinefunction(fn):
        return StructuredTool.from_function(coroutine=fn, name=fn.__name__, description=description)
    return StructuredTool.from_function(func=fn, name=fn.__name__, description=description)

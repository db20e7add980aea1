"""How responses become a decision. Pure, so every policy is easy to test exhaustively."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class ResponseLike(Protocol):
    decision: str
    approver: str


@dataclass(frozen=True)
class Outcome:
    status: str  # approved | rejected | answered
    deciding_index: int  # which response tipped it


def quorum_of(policy: dict[str, Any], recipients: int) -> int:
    """How many approvals decide: 1 for any, everyone for all, N for a quorum."""
    kind = policy.get("kind", "any")
    if kind == "all":
        return recipients
    if kind == "quorum":
        return int(policy["quorum"])
    return 1


def evaluate(kind: str, policy: dict[str, Any], recipients: int, responses: Sequence[ResponseLike]) -> Outcome | None:
    """The outcome once ``responses`` (oldest first) are in, or None while the request stays pending.

    A quorum is rejected as soon as it can no longer be reached; ``any`` is decided by the first answer.
    """
    if kind == "question":
        return Outcome("answered", 0) if responses else None
    needed = quorum_of(policy, recipients)
    approvals = rejections = 0
    for index, response in enumerate(responses):
        if response.decision == "approve":
            approvals += 1
            if approvals >= needed:
                return Outcome("approved", index)
        else:
            rejections += 1
            if recipients - rejections < needed or policy.get("kind", "any") == "any":
                return Outcome("rejected", index)
    return None

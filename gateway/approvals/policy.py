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


def evaluate(
    kind: str,
    policy: dict[str, Any],
    recipients: int,
    responses: Sequence[ResponseLike],
    original: int | None = None,
) -> Outcome | None:
    """The outcome once ``responses`` (oldest first) are in, or None while the request stays pending.

    ``recipients`` is everyone who may decide, ``original`` those the request was first sent to (escalation adds
    approvers: an ``all`` then needs as many approvals as there were original approvers, from any of them).
    ``any`` is decided by the first answer, ``all`` rejected by the first rejection, and a quorum rejected as
    soon as it can no longer be reached.
    """
    if kind == "question":
        return Outcome("answered", 0) if responses else None
    policy_kind = policy.get("kind", "any")
    needed = quorum_of(policy, original if original is not None else recipients)
    approvals = rejections = 0
    for index, response in enumerate(responses):
        if response.decision == "approve":
            approvals += 1
            if approvals >= needed:
                return Outcome("approved", index)
        else:
            rejections += 1
            if policy_kind in ("any", "all") or recipients - rejections < needed:
                return Outcome("rejected", index)
    return None

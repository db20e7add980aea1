from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.approvals.policy import evaluate, quorum_of


@dataclass
class R:
    decision: str
    approver: str = "x"


def run(policy: dict, n: int, decisions: str):  # "a" approve, "r" reject
    return evaluate("approval", policy, n, [R("approve" if d == "a" else "reject") for d in decisions])


@pytest.mark.parametrize(
    ("policy", "n", "decisions", "expected"),
    [
        ({"kind": "any"}, 3, "", None),
        ({"kind": "any"}, 3, "a", ("approved", 0)),
        ({"kind": "any"}, 3, "r", ("rejected", 0)),
        ({"kind": "all"}, 3, "aa", None),
        ({"kind": "all"}, 3, "aaa", ("approved", 2)),
        ({"kind": "all"}, 3, "ar", ("rejected", 1)),
        ({"kind": "quorum", "quorum": 2}, 3, "a", None),
        ({"kind": "quorum", "quorum": 2}, 3, "ra", None),
        ({"kind": "quorum", "quorum": 2}, 3, "raa", ("approved", 2)),
        ({"kind": "quorum", "quorum": 2}, 3, "rr", ("rejected", 1)),
        ({"kind": "quorum", "quorum": 3}, 4, "ar", None),
        ({"kind": "quorum", "quorum": 3}, 4, "arr", ("rejected", 2)),
        ({"kind": "quorum", "quorum": 1}, 2, "r", None),
        ({"kind": "quorum", "quorum": 1}, 2, "rr", ("rejected", 1)),
    ],
)
def test_policies(policy: dict, n: int, decisions: str, expected: tuple[str, int] | None) -> None:
    outcome = run(policy, n, decisions)
    assert (None if outcome is None else (outcome.status, outcome.deciding_index)) == expected


def test_question_is_answered_by_the_first_response() -> None:
    assert evaluate("question", {"kind": "any"}, 2, []) is None
    outcome = evaluate("question", {"kind": "any"}, 2, [R("answer"), R("answer")])
    assert outcome is not None and outcome.status == "answered" and outcome.deciding_index == 0


def test_quorum_of() -> None:
    assert quorum_of({"kind": "any"}, 5) == 1
    assert quorum_of({"kind": "all"}, 5) == 5
    assert quorum_of({"kind": "quorum", "quorum": 3}, 5) == 3


@pytest.mark.parametrize(
    ("policy", "decisions", "expected"),
    [
        # two original approvers and one added by escalation
        ({"kind": "all"}, "aa", ("approved", 1)),  # any two of the three approve
        ({"kind": "all"}, "a", None),
        ({"kind": "all"}, "ar", ("rejected", 1)),  # the first rejection still rejects
        ({"kind": "quorum", "quorum": 2}, "r", None),  # two of the three can still approve
        ({"kind": "quorum", "quorum": 2}, "rr", ("rejected", 1)),
        ({"kind": "any"}, "r", ("rejected", 0)),
    ],
)
def test_escalated_approvers_count_towards_the_original_requirement(
    policy: dict, decisions: str, expected: tuple[str, int] | None
) -> None:
    responses = [R("approve" if d == "a" else "reject") for d in decisions]
    outcome = evaluate("approval", policy, 3, responses, original=2)
    assert (None if outcome is None else (outcome.status, outcome.deciding_index)) == expected

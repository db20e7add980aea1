"""Does a small trained line classifier beat the hand-written rules? Measured on held-out data.

python bench/line_classifier.py

Talon's and Quagga's idea: describe each line by a few features (blank, ">" marker, attribution-like, header
field, separator, date, address, length, position, and the same for its neighbours), learn which lines start the
quoted history, and cut there. Here: logistic regression in plain Python (weights small enough to ship as data),
trained on one corpus set and scored with the corpus scorer on the other, beside the rules on the same set.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, table  # noqa: E402
from gateway.replies import _html, _text, extract_reply, parse_message  # noqa: E402
from gateway.replies._mime import body_parts  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
_WS = re.compile(r"\s+")


def body(rec: dict[str, Any]) -> str:
    if rec["is_full_message"]:
        plain, markup = body_parts(
            parse_message(rec["raw"].encode(rec.get("raw_encoding", "utf-8"), "surrogateescape"))
        )
        return plain if plain and plain.strip() else _html.html_to_text(markup or "")
    return _html.html_to_text(rec["raw"]) if rec["body_format"] == "html" else rec["raw"]


def line_features(line: str, index: int, count: int) -> list[str]:
    stripped = line.strip()
    if not stripped:
        return ["blank"]
    names = []
    if stripped.startswith(">"):
        names.append("quote")
    if _text._starts_like_attribution(line):
        names.append("starts_like_attribution")
    if _text._ends_with_wrote(line):
        names.append("ends_wrote")
    if stripped.endswith((":", "：")):
        names.append("ends_colon")
    if "@" in line:
        names.append("address")
    if _text._DATE_HINT_RE.search(line):
        names.append("date")
    if _text._is_from(line):
        names.append("from_field")
    elif _text._is_field(line):
        names.append("header_field")
    if _text._FORWARD_RE.match(line):
        names.append("forward")
    if any(rx.match(line) for rx in _text._SEPARATOR_RES) or _text._RULE_LINE_RE.match(line):
        names.append("separator")
    if _text._MOBILE_SIGNATURE_RE.match(line):
        names.append("mobile_signature")
    if _text._SIGNATURE_DELIMITER_RE.match(line):
        names.append("signature_delimiter")
    names.append("short" if len(stripped) < 25 else "medium" if len(stripped) < 70 else "long")
    names.append(f"position_{min(4, 5 * index // max(count, 1))}")
    return names


def features(lines: list[str]) -> list[list[str]]:
    own = [line_features(x, i, len(lines)) for i, x in enumerate(lines)]
    out = []
    for i, names in enumerate(own):
        row = ["bias", *names]
        row += [f"prev_{n}" for n in (own[i - 1] if i else ["start"])]
        row += [f"next_{n}" for n in (own[i + 1] if i + 1 < len(own) else ["end"])]
        out.append(row)
    return out


def labelled(rec: dict[str, Any]) -> tuple[list[str], int] | None:
    """The body's lines and the index of the first line of history (the expected reply is the lines above)."""
    lines = body(rec).replace("\r\n", "\n").split("\n")
    expected = _WS.sub("", rec["expected_reply"])
    seen = ""
    for k, line in enumerate(lines):
        if seen.startswith(expected) and expected:
            return lines, k
        seen += _WS.sub("", line)
    return (lines, len(lines)) if seen.startswith(expected) else None


def train(examples: list[tuple[list[str], int]], epochs: int = 30, rate: float = 0.1) -> dict[str, float]:
    weights: dict[str, float] = {}
    rows = [(f, 1.0 if i >= cut else 0.0) for lines, cut in examples for i, f in enumerate(features(lines))]
    rng = random.Random(7)
    for _ in range(epochs):
        rng.shuffle(rows)
        for names, target in rows:
            z = sum(weights.get(n, 0.0) for n in names)
            error = target - 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))
            for n in names:
                weights[n] = weights.get(n, 0.0) + rate * error - 1e-4 * weights.get(n, 0.0)
    return weights


def predict(weights: dict[str, float], text: str) -> str:
    lines = text.replace("\r\n", "\n").split("\n")
    for i, names in enumerate(features(lines)):
        if lines[i].strip() and sum(weights.get(n, 0.0) for n in names) > 0:
            return "\n".join(lines[:i]).strip()
    return text.strip()


def score(records: list[dict[str, Any]], reader: Any) -> tuple[float, int]:
    sys.path.insert(0, str(CORPUS.parent / "tools"))
    import score_replies

    judged = [score_replies.judge(rec, reader(rec) or "") for rec in records]
    return sum(j[1] for j in judged) / len(records), sum(j[2] for j in judged)


def rules(rec: dict[str, Any]) -> str:
    if rec["is_full_message"]:
        return extract_reply(rec["raw"].encode(rec.get("raw_encoding", "utf-8"), "surrogateescape"))
    return extract_reply(rec["raw"], html=rec["body_format"] == "html")


def measure() -> list[tuple[str, str, str]]:
    sets = {
        name: [json.loads(x) for x in (CORPUS / name).read_text().splitlines() if x.strip()]
        for name in ("replies.jsonl", "replies_more.jsonl")
    }
    rows = []
    for train_on, test_on in (("replies.jsonl", "replies_more.jsonl"), ("replies_more.jsonl", "replies.jsonl")):
        examples = [x for x in map(labelled, sets[train_on]) if x is not None]
        weights = train(examples)
        held_out = sets[test_on]
        started = time.perf_counter()
        model_score, model_leaks = score(held_out, lambda rec, w=weights: predict(w, body(rec)))
        elapsed = time.perf_counter() - started
        rule_score, rule_leaks = score(held_out, rules)
        rows += [
            (
                f"trained on {train_on} ({len(examples)} labelled), scored on {test_on}",
                f"classifier {model_score:.1%} ({model_leaks} leaks)",
                f"rules {rule_score:.1%} ({rule_leaks} leaks); {len(weights)} weights, "
                f"{len(held_out) / elapsed:,.0f} msg/s",
            )
        ]
    return rows


def main() -> None:
    print(table(f"Line classifier vs rules, held-out lenient score, on {machine()}", measure()))


if __name__ == "__main__":
    main()

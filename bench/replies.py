"""Reply reading accuracy and speed on the real fixtures in ../shared/corpus (never copied into the project).

python bench/replies.py

Accuracy is the corpus scorer's (../shared/tools/score_replies.py: strict, lenient, leaked quotes). Speed is
extract_reply over each set, 20 rounds, after one warm-up round, full messages given as bytes (parsed inside).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, table  # noqa: E402
from gateway.replies import automated_kind, extract_reply  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
SETS = {"replies.jsonl": "talon 86.9%", "replies_more.jsonl": "email-reply-parser 80.2%"}


def raw_bytes(rec: dict[str, Any]) -> bytes:
    return rec["raw"].encode(rec.get("raw_encoding", "utf-8").split(" ")[0], "surrogateescape")


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (CORPUS / name).read_text().splitlines() if x.strip()]


def speed(records: list[dict[str, Any]], rounds: int = 20) -> float:
    inputs = [
        (raw_bytes(r), False) if r["is_full_message"] else (r["raw"], r["body_format"] == "html") for r in records
    ]
    for raw, html in inputs:
        extract_reply(raw, html=html)
    started = time.perf_counter()
    for _ in range(rounds):
        for raw, html in inputs:
            extract_reply(raw, html=html)
    return rounds * len(inputs) / (time.perf_counter() - started)


def measure() -> list[tuple[str, str, str]]:
    sys.path.insert(0, str(CORPUS.parent / "tools"))
    import score_replies

    run = score_replies.project()
    rows: list[tuple[str, str, str]] = []
    for name, peer in SETS.items():
        records = load(name)
        judged = [score_replies.judge(rec, run(rec) or "") for rec in records]
        lenient = sum(j[1] for j in judged) / len(records)
        rows += [
            (f"{name} lenient", f"{lenient:.1%}", f"target >= 95% (n={len(records)}; best peer: {peer})"),
            (f"{name} strict", f"{sum(j[0] for j in judged) / len(records):.1%}", ""),
            (f"{name} quoted history leaked", f"{sum(j[2] for j in judged)}", "target 0"),
            (f"{name} extract_reply speed", f"{speed(records):,.0f} msg/s", "target >= 10,000"),
        ]

    automated = load("automated.jsonl")
    auto_raw = [(raw_bytes(r), r["kind"]) for r in automated]
    right = sum(automated_kind(raw) == kind for raw, kind in auto_raw)
    humans = [raw_bytes(r) for name in SETS for r in load(name) if r["is_full_message"]]
    false_alarms = sum(automated_kind(raw) is not None for raw in humans)
    started = time.perf_counter()
    for _ in range(5):
        for raw, _ in auto_raw:
            automated_kind(raw)
    auto_speed = 5 * len(auto_raw) / (time.perf_counter() - started)
    return [
        *rows,
        ("automated_kind right", f"{right}/{len(auto_raw)}", "target all"),
        ("human replies called automatic", f"{false_alarms}/{len(humans)}", "target 0"),
        ("automated_kind speed", f"{auto_speed:,.0f} msg/s", ""),
    ]


def main() -> None:
    print(table(f"Reply reading on ../shared/corpus, on {machine()}", measure()))


if __name__ == "__main__":
    main()

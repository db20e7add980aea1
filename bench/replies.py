"""Reply reading accuracy and speed on the real fixtures in ../shared/corpus (never copied into the project).

python bench/replies.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import machine, table  # noqa: E402
from gateway.replies import automated_kind, extract_reply  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"


def raw_bytes(rec: dict) -> bytes:
    return rec["raw"].encode(rec.get("raw_encoding", "utf-8").split(" ")[0], "surrogateescape")


def measure() -> list[tuple[str, str, str]]:
    sys.path.insert(0, str(CORPUS.parent / "tools"))
    import score_replies

    replies = [json.loads(x) for x in (CORPUS / "replies.jsonl").read_text().splitlines() if x.strip()]
    automated = [json.loads(x) for x in (CORPUS / "automated.jsonl").read_text().splitlines() if x.strip()]
    run = score_replies.project()
    judged = [score_replies.judge(rec, run(rec) or "") for rec in replies]
    strict = sum(j[0] for j in judged) / len(replies)
    lenient = sum(j[1] for j in judged) / len(replies)
    leaks = sum(j[2] for j in judged)

    inputs = [
        (raw_bytes(r), False) if r["is_full_message"] else (r["raw"], r["body_format"] == "html") for r in replies
    ]
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        for raw, html in inputs:
            extract_reply(raw) if isinstance(raw, bytes) else extract_reply(raw, html=html)
    speed = rounds * len(inputs) / (time.perf_counter() - started)

    auto_raw = [(raw_bytes(r), r["kind"]) for r in automated]
    right = sum(automated_kind(raw) == kind for raw, kind in auto_raw)
    humans = [raw_bytes(r) for r in replies if r["is_full_message"]]
    false_alarms = sum(automated_kind(raw) is not None for raw in humans)
    started = time.perf_counter()
    for _ in range(5):
        for raw, _ in auto_raw:
            automated_kind(raw)
    auto_speed = 5 * len(auto_raw) / (time.perf_counter() - started)

    return [
        ("extract_reply lenient", f"{lenient:.1%}", f"target >= 95% (n={len(replies)}; talon 86.9%)"),
        ("extract_reply strict", f"{strict:.1%}", ""),
        ("quoted history leaked", f"{leaks}", ""),
        ("extract_reply speed", f"{speed:,.0f} msg/s", "target >= 5,000"),
        ("automated_kind right", f"{right}/{len(auto_raw)}", "target all"),
        ("human replies called automatic", f"{false_alarms}/{len(humans)}", "target 0"),
        ("automated_kind speed", f"{auto_speed:,.0f} msg/s", ""),
    ]


def main() -> None:
    print(table(f"Reply reading on ../shared/corpus, on {machine()}", measure()))


if __name__ == "__main__":
    main()

"""From a human's decision to the decorated function running, through the Python client; and what a waiting
agent costs.

A `gateway serve` process and an SMTP sink; an agent thread calls a function gated with `require_approval`;
the bench plays the human (page GET for the CSRF field, then the form POST). Latency is from just before the
POST to the first line of the function body.

    python bench/client.py [--samples 50]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import gateway_server, machine, percentile, smtp_sink, table
from gateway.client import Gateway

LINK_RE = re.compile(r"https?://\S+/r/[A-Za-z0-9_\-.]+/approve")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    latencies: list[float] = []
    with smtp_sink(keep=True) as sink, gateway_server(sink.port) as server:
        gw = Gateway(server.base, server.key, run_id=f"bench-{time.time_ns()}")
        started_at: dict[int, float] = {}

        def make(i: int):  # type: ignore[no-untyped-def]
            @gw.require_approval(f"human{i}@bench.test")
            def act(n: int) -> int:
                started_at[n] = time.perf_counter()
                return n

            return act

        pool = ThreadPoolExecutor(1)
        human = httpx.Client(timeout=10)
        idle_cpu = 0.0
        for i in range(args.samples):
            result = pool.submit(make(i), i)
            rcpt = f"human{i}@bench.test"
            while rcpt not in sink.mails:
                time.sleep(0.005)
            if i == 0:  # the agent's CPU while it waits: one thread parked on one socket
                time.sleep(0.5)
                before = time.process_time()
                time.sleep(5)
                idle_cpu = (time.process_time() - before) / 5
            raw = sink.mails[rcpt]
            text = email.message_from_bytes(raw, policy=email.policy.default).get_body(("plain",)).get_content()
            link = LINK_RE.search(text).group(0)  # type: ignore[union-attr]
            csrf = CSRF_RE.search(human.get(link).text).group(1)  # type: ignore[union-attr]
            time.sleep(0.05)  # the agent is parked in its long-poll
            sent = time.perf_counter()
            posted = human.post(link.rsplit("/", 1)[0], data={"csrf_token": csrf, "decision": "approve"})
            assert posted.status_code == 303, posted.status_code
            assert result.result(10) == i
            latencies.append((started_at[i] - sent) * 1000)
        pool.shutdown()
        gw.close()
    print(
        table(
            f"Decision -> gated function running, Python client ({args.samples} samples) on {machine()}",
            [
                ("p50", f"{percentile(latencies, 50):.1f} ms", ""),
                ("p99", f"{percentile(latencies, 99):.1f} ms", "target < 100 ms"),
                ("max", f"{max(latencies):.1f} ms", ""),
                ("agent process CPU while waiting", f"{idle_cpu * 100:.2f} %", "one long-poll, no polling"),
            ],
        )
    )


if __name__ == "__main__":
    main()

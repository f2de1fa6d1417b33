#!/usr/bin/env python3
"""Loopback load with the Python clients the seeds are about: aiohttp, httpx.

Sends GET requests to one URL, reads every body to its end, and prints one
JSON line with the run's throughput, errors and latency percentiles. The
`pycompare` binary (crates/palisade-bench/src/bin/pycompare.rs) runs it
against the same loopback server as its Rust clients; see README.md here.

Modes:
  steady  K worker tasks, each taking the next request from a shared counter
          until N have been sent: K requests in flight the whole time.
  burst   all N requests launched at once with asyncio.gather
          (return_exceptions=True), the seeds' "1 000 requests at once".

Settings, as a user following the seeds would set them (and as palisade's
default stack does): one shared session/client, a pool of 100 connections
(aiohttp's TCPConnector default limit; httpx's Limits default
max_connections), keep-alive for up to 100 idle connections (aiohttp keeps
every pooled one; httpx's default of 20 is raised to match, see
--httpx-keepalive), 10 s per attempt and at most 5 s waiting for a pooled
connection (httpx: Timeout(10, pool=5); aiohttp: ClientTimeout(total=10,
connect=5), whose `connect` covers the wait for a pool slot).

--stack resilient adds the seeds' resilience stack around each request, in
palisade's layer order: a 30 s deadline (asyncio.timeout), stamina.retry
(4 attempts on transport errors, timeouts, 429 and 5xx), an aiobreaker
CircuitBreaker (5 consecutive failures open it for 5 s) and an
asyncio.Semaphore(100) gating the attempt. Against an upstream answering
200 it never retries nor opens: it measures what the stack costs.

Latency is per request, from the moment its coroutine starts to the end of
its body (in burst mode this includes the wait for a pooled connection).
The clock starts after the client is built and warmed up (--warmup
requests first: by default 4 K, at most N, in steady mode, which opens the
K connections and runs every code path, and 1 in burst mode, so that a
burst starts on a cold pool as a fresh script's would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from datetime import timedelta
from importlib import metadata

POOL = 100
ATTEMPT_TIMEOUT = 10.0
POOL_TIMEOUT = 5.0
DEADLINE = 30.0


class StatusError(Exception):
    """A response whose status is not 2xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"status {status}")
        self.status = status


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="the URL to GET")
    p.add_argument("--client", choices=["aiohttp", "httpx"])
    p.add_argument("--requests", type=int, default=20_000, help="N (default 20000)")
    p.add_argument("--in-flight", type=int, default=64, help="K, steady mode (default 64)")
    p.add_argument("--mode", choices=["steady", "burst"], default="steady")
    p.add_argument(
        "--stack",
        choices=["plain", "resilient"],
        default="plain",
        help="resilient: deadline + stamina retry + aiobreaker + semaphore",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="requests sent before the clock starts (default: min(4 K, N) "
        "in steady mode, 1 in burst mode)",
    )
    p.add_argument(
        "--httpx-keepalive",
        type=int,
        default=POOL,
        help="httpx Limits(max_keepalive_connections=...) (default 100; "
        "httpx's own default is 20)",
    )
    p.add_argument(
        "--versions",
        action="store_true",
        help="print the interpreter's and libraries' versions as JSON and exit",
    )
    args = p.parse_args(argv)
    if not args.versions:
        if args.url is None or args.client is None:
            p.error("--url and --client are required")
        if args.requests < 1 or args.in_flight < 1:
            p.error("--requests and --in-flight must be positive")
    return args


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for lib in ["aiohttp", "httpx", "stamina", "aiobreaker"]:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "missing"
    return out


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not sorted_ms:
        return float("nan")
    rank = max(1, min(len(sorted_ms), math.ceil(q * len(sorted_ms))))
    return sorted_ms[rank - 1]


class Aiohttp:
    def __init__(self, url: str) -> None:
        import aiohttp

        self.url = url
        self.transient = (aiohttp.ClientError, asyncio.TimeoutError)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL),
            timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT, connect=POOL_TIMEOUT),
        )

    async def fetch(self) -> None:
        async with self.session.get(self.url) as resp:
            await resp.read()
            if resp.status >= 300:
                raise StatusError(resp.status)

    async def close(self) -> None:
        await self.session.close()


class Httpx:
    def __init__(self, url: str, keepalive: int) -> None:
        import httpx

        self.url = url
        self.transient = (httpx.TransportError, asyncio.TimeoutError)
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=keepalive),
            timeout=httpx.Timeout(ATTEMPT_TIMEOUT, pool=POOL_TIMEOUT),
        )

    async def fetch(self) -> None:
        # Not streamed: `get` reads the whole body before it returns.
        resp = await self.client.get(self.url)
        if resp.status_code >= 300:
            raise StatusError(resp.status_code)

    async def close(self) -> None:
        await self.client.aclose()


def resilient(fetch, transient):
    """Wraps `fetch` in the seeds' resilience stack, in palisade's order:
    deadline > retry > breaker > concurrency limit > attempt timeout."""
    import aiobreaker
    import stamina

    semaphore = asyncio.Semaphore(POOL)
    breaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=5))

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, StatusError):
            return exc.status == 429 or exc.status >= 500
        return isinstance(exc, transient)

    async def guarded() -> None:
        async with semaphore:
            async with asyncio.timeout(ATTEMPT_TIMEOUT):
                await fetch()

    @stamina.retry(on=retryable, attempts=4, timeout=DEADLINE)
    async def attempt() -> None:
        await breaker.call_async(guarded)

    async def request() -> None:
        async with asyncio.timeout(DEADLINE):
            await attempt()

    return request


async def steady(request, n: int, k: int, latencies: list[float]) -> int:
    sent = 0
    errors = 0

    async def worker() -> None:
        nonlocal sent, errors
        while sent < n:
            sent += 1
            t0 = time.perf_counter()
            try:
                await request()
                latencies.append(time.perf_counter() - t0)
            except Exception:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(min(k, n))))
    return errors


async def burst(request, n: int, latencies: list[float]) -> int:
    async def one() -> None:
        t0 = time.perf_counter()
        await request()
        latencies.append(time.perf_counter() - t0)

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return sum(1 for r in results if isinstance(r, BaseException))


async def run(args: argparse.Namespace) -> dict:
    if args.client == "aiohttp":
        client = Aiohttp(args.url)
    else:
        client = Httpx(args.url, args.httpx_keepalive)
    request = client.fetch
    if args.stack == "resilient":
        request = resilient(client.fetch, client.transient)
    name = args.client if args.stack == "plain" else f"{args.client}_resilient"
    try:
        warmup = args.warmup
        if warmup is None:
            warmup = min(4 * args.in_flight, args.requests) if args.mode == "steady" else 1
        if warmup > 0:
            await steady(request, warmup, args.in_flight, [])
        latencies: list[float] = []
        start = time.perf_counter()
        if args.mode == "steady":
            errors = await steady(request, args.requests, args.in_flight, latencies)
        else:
            errors = await burst(request, args.requests, latencies)
        seconds = time.perf_counter() - start
    finally:
        await client.close()
    ms = sorted(x * 1000.0 for x in latencies)
    return {
        "client": name,
        "mode": args.mode,
        "requests": args.requests,
        "in_flight": args.in_flight if args.mode == "steady" else args.requests,
        "seconds": seconds,
        "rps": args.requests / seconds,
        "errors": errors,
        "p50_ms": percentile(ms, 0.50),
        "p99_ms": percentile(ms, 0.99),
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.versions:
        print(json.dumps(versions()))
        return 0
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Click to prompt: from the HTTP request that starts a lab (cached busybox image) to the
first byte of the shell's prompt on the terminal's WebSocket, including the redirect to the
lab page, as a browser does it. Prints p50 and p99.

    .venv/bin/python bench/site_click_to_prompt.py [--runs 40] [--userns private|host]
"""

from __future__ import annotations

import argparse
import asyncio

import websockets
from site_stack import Browser, Site, now, report, site_stack


async def one_start(site: Site, verbose: bool = False) -> float:
    browser = Browser(site)
    browser.request("GET", "/")  # the home page: the CSRF cookie
    started = now()
    lab_path, terminals = browser.start_lab()
    posted = now()
    uri = f"ws://{site.host}:{site.port}{terminals[0]}"
    async with websockets.connect(
        uri,
        origin=site.origin,  # type: ignore[arg-type]
        additional_headers={"Cookie": browser.cookie_header()},
        compression=None,
    ) as ws:
        while True:
            frame = await ws.recv()
            if isinstance(frame, bytes) and b"# " in frame:
                break
    elapsed = (now() - started) * 1000
    if verbose:
        http_ms = 1000 * (posted - started)
        print(f"  start and lab page {http_ms:.1f} ms, then WebSocket {elapsed - http_ms:.1f} ms")
    browser.end_lab(lab_path)
    return elapsed


async def measure(site: Site, runs: int, verbose: bool) -> list[float]:
    await one_start(site)  # warm-up: imports, first connections
    return [await one_start(site, verbose) for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--verbose", action="store_true", help="print each run's parts")
    parser.add_argument(
        "--userns",
        choices=("private", "host"),
        default="private",
        help="the engine daemon's --userns: containers in user namespaces (the default) or not",
    )
    args = parser.parse_args()
    env = {"PLAYGROUND_ANON_STARTS_PER_HOUR": "100000"}
    with site_stack(f"--userns={args.userns}", **env) as site:
        samples = asyncio.run(measure(site, args.runs, args.verbose))
    title = f"click to prompt (POST start -> lab page -> first prompt byte), userns {args.userns}"
    print(report(title, samples))


if __name__ == "__main__":
    main()

"""One service's burst of slow commands against another's pings, by the burst's pool size.

    python bench/store_crowding.py [--rows 20000] [--burst 64] [--rounds 2] [--pools 100,2,4]

nx-27017 runs every command on the 6 threads of its asyncio default executor (2 cores) and one
command at a time per database. A client with a large pool sends a burst whole: the commands
take the store's threads and wait there on their database's lock, and every other command
queues behind them, the drivers' heartbeats included (PyMongo marks the store unknown when a
heartbeat misses connectTimeoutMS, then cancels the operations in flight: the services' 503s).
This starts one embedded store, stores ``--rows`` documents in one database, and sends
``--burst`` unindexed finds (each a scan of every row) at once from a client with PyMongo's
default pool (100), from one with the pool the devstack gives each service
(``EMBEDDED_STORE_CONNECTIONS``) and from any other ``--pools``, while another client pings
another database every 50 ms: the burst's duration and the pings' p50 and maximum, each pool
in turn, ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from common import header, percentile
from pymongo import AsyncMongoClient

from crm_platform.devstack.embedded import IN_MEMORY, start_store
from crm_platform.devstack.processes import free_port
from crm_platform.devstack.services import EMBEDDED_STORE_CONNECTIONS


async def trial(url: str, pool: int, burst: int) -> str:
    crowd: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, maxPoolSize=pool)
    other: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, serverSelectionTimeoutMS=10_000)
    await other["other"].command("ping")
    done = asyncio.Event()
    pings: list[float] = []

    async def ping() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await other["other"].command("ping")
            pings.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)

    async def scan() -> None:
        await crowd["crowd"]["docs"].find({"x": -1}).to_list()

    pinger = asyncio.create_task(ping())
    started = time.perf_counter()
    await asyncio.gather(*(scan() for _ in range(burst)))
    seconds = time.perf_counter() - started
    done.set()
    await pinger
    await crowd.close()
    await other.close()
    return (
        f"  pool {pool:>3}: {burst} scans in {seconds:.1f} s; the other client's ping p50"
        f" {percentile(pings, 50):.0f} ms, max {max(pings):.0f} ms ({len(pings)} pings)"
    )


async def run(url: str, args: argparse.Namespace) -> list[str]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    await client["crowd"]["docs"].insert_many([{"_id": i, "x": i, "pad": "p" * 200} for i in range(args.rows)])
    await client.close()
    lines = []
    for _ in range(args.rounds):
        for pool in args.pools:
            lines.append(await trial(url, pool, args.burst))
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="documents each scan reads")
    parser.add_argument("--burst", type=int, default=64, help="scans sent at once")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--pools",
        type=lambda text: [int(p) for p in text.split(",")],
        default=[100, EMBEDDED_STORE_CONNECTIONS],
        help="pool sizes of the bursting client, comma-separated",
    )
    args = parser.parse_args()
    print("\n".join(header("one client's burst against another's pings, by pool size")), flush=True)
    work = Path(tempfile.mkdtemp(prefix="crm-bench-crowding-"))
    store = start_store(IN_MEMORY, free_port(), work)
    try:
        asyncio.run(run(f"mongodb://127.0.0.1:{store.port}", args))
    finally:
        store.stop()


if __name__ == "__main__":
    main()

"""A delivery worker in a process of its own, for the kill test in test_outbox.py.

Usage: python outbox_worker_proc.py DATABASE_URL SIGNING_SEED_B64 WORKER_ID
Prints "ready" once running; SIGTERM stops it gracefully (SIGKILL is the point of the test).
"""

from __future__ import annotations

import asyncio
import base64
import signal
import sys

import structlog
from nacl.signing import SigningKey

from beckn.outbox import DeliveryWorker
from beckn.signing import Signer
from beckn.store.db import create_engine, session_factory

SUBSCRIBER_ID = "bpp.lakou.example.mq"
UNIQUE_KEY_ID = "kill-test-key"
REQUEST_TIMEOUT = 1.0
LEASE_SECONDS = 2.0


async def main(url: str, seed_b64: str, worker_id: str) -> None:
    # Logs to stderr, which the test leaves to pytest: stdout is a pipe nobody drains after "ready",
    # and a full pipe would freeze the worker.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    engine = create_engine(url)
    signer = Signer(SUBSCRIBER_ID, UNIQUE_KEY_ID, SigningKey(base64.b64decode(seed_b64)))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with DeliveryWorker(
            session_factory(engine),
            signer,
            base_backoff=0.05,
            max_backoff=0.2,
            request_timeout=REQUEST_TIMEOUT,
            lease_seconds=LEASE_SECONDS,
            poll_interval=0.05,
            worker_id=worker_id,
        ) as worker:
            print("ready", flush=True)
            await worker.run(stop)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

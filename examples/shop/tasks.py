"""The shop's background tasks; autotask imports this module on startup (like admin.py).

Each result names the process that ran it (``pid``), so you can see that the run happened inside
the web server process itself, not in a separate worker.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from typing import Any

from autotask import task


@task
async def fetch_price(sku: str) -> dict[str, Any]:
    """Pretend to ask a supplier's API for a price (an async task runs on the runtime's loop)."""
    await asyncio.sleep(0.5)
    cents = 100 + zlib.crc32(sku.encode()) % 9900
    return {"sku": sku, "price": f"{cents / 100:.2f}", "currency": "EUR", "pid": os.getpid()}


@task(retries=2)
def send_receipt(order_id: int) -> str:
    """Pretend to e-mail a receipt (a plain function runs in one of the runtime's threads)."""
    return f"receipt for order {order_id} sent"


@task
async def slow(seconds: float) -> dict[str, Any]:
    """Sleep, then say so: long enough to still be running when the server is asked to stop."""
    await asyncio.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid()}

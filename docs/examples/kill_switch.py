"""A bot whose SIGTERM (or Ctrl+C) cancels every open order of its market before it exits.

``python kill_switch.py``, with the key in UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY (it needs
the "Make Orders" and "order query" permissions) and, optionally, UPBIT_BASE_URL.
"""

import asyncio
import logging
import os
import signal
import sys

from upbit_cancel import BatchCanceller, UpbitError, UpbitSession

MARKET = "SGD-BTC"
log = logging.getLogger("bot")


async def trade(session: UpbitSession) -> None:
    """The strategy. Here it only looks at its open orders once a second, until cancelled."""
    while True:
        await session.open_orders(market=MARKET)
        await asyncio.sleep(1)


async def main() -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    access_key, secret_key = os.environ["UPBIT_ACCESS_KEY"], os.environ["UPBIT_SECRET_KEY"]
    base_url = os.environ.get("UPBIT_BASE_URL")
    async with UpbitSession(access_key, secret_key, base_url=base_url) as session:
        trading = asyncio.create_task(trade(session))
        trading.add_done_callback(lambda _: stop.set())  # a strategy that dies stops the bot too
        log.info("trading %s; SIGTERM cancels every open order", MARKET)
        await stop.wait()

        # Stop placing orders first, so that none appears behind the cancels.
        trading.cancel()
        [ended] = await asyncio.gather(trading, return_exceptions=True)
        failed = not isinstance(ended, asyncio.CancelledError)
        if failed:
            log.error("the strategy failed: %r", ended)
        try:
            result = await BatchCanceller(session).cancel_open(market=MARKET, confirm=True)
        except UpbitError as error:  # the open orders could not be listed
            log.error("kill switch: %s", error)
            return 1

    log.info("%s canceled, %s already closed", result.success.count, result.failed.count)
    for uuid in result.still_open:
        log.error("still open: %s", uuid)
    for uuid in result.unknown_states:
        log.error("state unknown: %s (%s)", uuid, result.state_errors[uuid])
    return 1 if failed or result.still_open or result.unknown_states else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    sys.exit(asyncio.run(main()))

"""The part of a bot that the tests beside it exercise: its kill switch."""

import logging

from upbit_cancel import BatchCanceller, BatchResult, UpbitSession

log = logging.getLogger("my_bot")


async def kill_switch(session: UpbitSession, market: str) -> BatchResult:
    """Cancel every open order of ``market``, confirm, and say loudly what is left."""
    result = await BatchCanceller(session).cancel_open(market=market, confirm=True)
    for uuid in result.still_open:
        log.error("kill switch: %s is still open", uuid)
    for uuid in result.unknown_states:
        log.error("kill switch: state of %s unknown: %s", uuid, result.state_errors[uuid])
    return result

"""Reputation controller: router counters -> rolling window -> OperatorPool.status.reputation and Penalties.

``planner`` holds every decision (pure); ``controller`` is the asyncio task that does the I/O.
"""

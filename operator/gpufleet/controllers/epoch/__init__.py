"""The epoch controller: counts work from the router, closes epochs, keeps points and ledger stake.

``plan`` holds the pure decisions; ``controller`` is a small independent asyncio task (see its
docstring for the seam it uses with the rest of the operator).
"""

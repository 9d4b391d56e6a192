"""Pure reputation math: the rolling outcome window, completion tiers, throughput scores, the
penalty ladder and the utilisation-driven k controller.

Nothing here does I/O or imports kopf, aiohttp or kubernetes; the controllers in
``gpufleet.controllers.reputation`` and ``gpufleet.controllers.routingpolicy`` feed these
functions and write their results. Every ratio is an exact ``Fraction`` so the same inputs always
give the same status (no needless writes) and boundaries such as 99.5% are exact.
"""

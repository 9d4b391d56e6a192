"""Fleet simulator behind ``gpufleet simulate``: a discrete-event model of the stake-weighted router.

It answers the question the Epoch 3 announcement leaves open ("optimal k parameter values for
different network conditions") with data, and validates the k controller and the reputation
rules before they touch a real fleet. The priority formula, the router's selection rule, the k
controller and the reputation rules are imported from the project (see ``adapters``); the event
loop (``engine``) is a heap of our own because SimPy's per-event generator cost is too high for
10^6 requests in a minute.
"""

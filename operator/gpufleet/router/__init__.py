"""Stake-weighted router: pure eligibility/weights, the Envoy control plane and its counters.

``weights`` and ``stats`` are pure (no I/O) and imported by other areas (reputation, epochs,
simulator); the control plane lives in ``controlplane`` and ``envoy``.
"""

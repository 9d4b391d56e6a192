"""The router's real-Envoy fixtures, shared with the reputation tests that route through it."""

from tests.integration.router.conftest import make_router, stubs

__all__ = ["make_router", "stubs"]

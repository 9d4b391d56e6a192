"""Every kopf handler of the operator is ``async def``.

kopf runs plain functions in a thread pool; ours touch the reconciler's work queue and caches,
which are not thread-safe (asyncio only).
"""

from __future__ import annotations

import inspect

import kopf
import pytest

from gpufleet.controllers.operator import build_operator
from gpufleet.settings import OperatorSettings


def all_handlers(registry: kopf.OperatorRegistry) -> list[object]:
    parts = ("_activities", "_indexing", "_watching", "_spawning", "_changing", "_webhooks")
    return [h for part in parts for h in getattr(registry, part).get_all_handlers()]


@pytest.mark.parametrize(("indexes", "pod_watch"), [("kopf", "direct"), ("local", "kopf")])
def test_every_handler_is_a_coroutine_function(indexes: str, pod_watch: str) -> None:
    settings = OperatorSettings(indexes=indexes, pod_watch=pod_watch)
    registry = build_operator(settings, kubeconfig="/nonexistent").registry  # core + rollouts
    handlers = all_handlers(registry)
    ids = {str(getattr(h, "id", "")).rsplit(".", 1)[-1] for h in handlers}
    assert {"login", "start", "stop", "inode_event", "node_event", "pool_event", "release_event"} <= ids
    assert not any("rollout" in i for i in ids)  # one controller: the rollout is a step of its pass
    sync = [getattr(h, "id", h) for h in handlers if not inspect.iscoroutinefunction(getattr(h, "fn", None))]
    assert sync == []

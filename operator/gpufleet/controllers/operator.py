"""Assemble and run the whole operator (the one reconciler with its rollout step) in one kopf registry.

One place builds the registry so that `gpufleet run`, the demo, the integration tests and the
benchmarks all run the same operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import kopf

from gpufleet.controllers.handlers import kopf_settings, make_registry
from gpufleet.controllers.reconciler import Reconciler
from gpufleet.controllers.rollout import RolloutController
from gpufleet.settings import OperatorSettings


@dataclass
class Operator:
    """The parts of one operator instance, for callers that want to look inside (tests, demo)."""

    settings: OperatorSettings
    registry: kopf.OperatorRegistry
    reconciler: Reconciler
    rollouts: RolloutController
    #: Set when SIGINT/SIGTERM asked the operator to stop (see ``running_operator``).
    signalled: asyncio.Event = field(default_factory=asyncio.Event)


def build_operator(
    settings: OperatorSettings, *, kubeconfig: str | None = None, rollouts: bool = True
) -> Operator:
    """The operator ``gpufleet run`` starts (``rollouts=False``: ``--core-only``, no rollout records)."""
    reconciler = Reconciler(settings, rollouts=rollouts)
    registry = make_registry(reconciler, kubeconfig=kubeconfig)
    if settings.epochs_enabled:  # #19: an independent task, started and stopped with the operator
        from gpufleet.controllers.epoch.controller import register_epoch_controller

        register_epoch_controller(registry, settings, reconciler)
    if settings.reputation_enabled:  # #17: reputation + k controllers, independent tasks like the epochs'
        from gpufleet.controllers.reputation.wiring import register_reputation_controllers

        register_reputation_controllers(registry, settings, reconciler)
    return Operator(settings=settings, registry=registry, reconciler=reconciler, rollouts=reconciler.rollouts)


def _scope(settings: OperatorSettings) -> dict[str, object]:
    namespaces = settings.namespaces
    if namespaces:
        return {"namespaces": list(namespaces), "clusterwide": False}
    return {"clusterwide": True}


@contextlib.asynccontextmanager
async def running_operator(
    settings: OperatorSettings, *, kubeconfig: str | None = None, startup_timeout: float = 30.0
) -> AsyncIterator[Operator]:
    """Run the operator on the current event loop until the context exits."""
    op = build_operator(settings, kubeconfig=kubeconfig)
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=op.registry,
            settings=kopf_settings(settings),
            standalone=settings.peering_name is None,
            stop_flag=stop,
            ready_flag=ready,
            liveness_endpoint=settings.liveness_endpoint,
            **_scope(settings),  # type: ignore[arg-type]
        )
    )
    try:
        done, _ = await asyncio.wait(
            {task, asyncio.ensure_future(ready.wait())},
            timeout=startup_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if task in done:
            task.result()  # raise why the operator could not start
            raise RuntimeError("the operator stopped during start-up")
        if not ready.is_set():
            raise TimeoutError(f"the operator did not start within {startup_timeout:.0f}s")
        if threading.current_thread() is threading.main_thread():
            # kopf's own handlers stop only the operator; ours also tell the caller (who shares
            # this event loop and would otherwise keep running without an operator).
            loop = asyncio.get_running_loop()

            def on_signal() -> None:
                op.signalled.set()
                stop.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, on_signal)
        yield op
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)

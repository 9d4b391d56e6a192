"""The controller runtime every gpufleet controller shares (public API for other controllers).

One of each, owned by the operator process and handed to every controller:

* ``WorkQueue`` (``runtime.workqueue``): de-duplicating, level-based queue of keys with delayed
  adds. A controller registers a handler for its key kind with ``Reconciler.register`` and queues
  keys ``(kind, namespace, name)``; the operator's workers run them (one pass per key at a time).
* ``Backoff`` (``runtime.backoff``): exponential back-off with full jitter, per key.
* ``StatusWriter`` (``runtime.overlay``): the one status write path: serialised per object,
  composed on the freshest known status, each caller owning its condition types, with the
  read-your-writes overlay (``current(plural, body)``).
* The shared pod watch: ``Reconciler.caches.pods`` (``(namespace, InferenceNode)`` ->
  ``PodView``), fed by one informer (``controllers.podwatch``); ``Reconciler.watch_pods(fn)``
  subscribes ``fn(namespace, inode, view_or_None)`` to every pod change.

``build_operator`` / ``running_operator`` / ``Operator`` live in ``gpufleet.controllers.operator``
(they import every controller, so the runtime must not). Transition shim: the old spelling
``gpufleet.controllers.runtime.build_operator`` still resolves, without an import of the assembly
from here, until the last caller (``cli/cmd_run.py``, pending its owner's commit) uses the new one.
"""

from __future__ import annotations

import importlib
from typing import Any

from gpufleet.controllers.runtime.backoff import Backoff
from gpufleet.controllers.runtime.overlay import StatusWriter, compose_conditions, strip_nulls
from gpufleet.controllers.runtime.workqueue import WorkQueue

__all__ = ["Backoff", "StatusWriter", "WorkQueue", "compose_conditions", "strip_nulls"]


def __getattr__(name: str) -> Any:
    if name in ("Operator", "build_operator", "running_operator"):  # transition shim, see above
        return getattr(importlib.import_module("gpufleet.controllers.operator"), name)
    raise AttributeError(name)

"""The router's counters read from Prometheus instead of the routers (``GPUFLEET_REPUTATION_PROMETHEUS_URL``).

Five instant queries per pass, one per counter the window needs, each a plain selector of the
router's series (``gpufleet_router_*``); the results are grouped by scrape target (``pod``, else
``instance``) into one ``RouterStats`` per router replica, exactly what ``GET /v1/stats`` would
return. Prometheus does not know when a router's counters started, so ``since`` is fixed and a
reset shows as counters going down (which the window treats as a reset). The series' own
``namespace`` label may have been renamed ``exported_namespace`` by the scrape (honorLabels off):
both are read.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gpufleet.router.stats import DeviceKey, DeviceStats, Failures, Histogram, RouterStats, Tokens

logger = logging.getLogger("gpufleet.reputation")

QUERIES = {
    "completions": "gpufleet_router_completions_total",
    "failures": "gpufleet_router_failures_total",
    "tokens": 'gpufleet_router_tokens_total{kind="completion"}',
    "latency": "gpufleet_router_request_duration_seconds_sum",
    "ttfb": "gpufleet_router_ttfb_seconds_sum",
}
SINCE = datetime(1970, 1, 1, tzinfo=UTC)
CAUSES = ("connect", "reset", "http_5xx", "timeout", "client_cancel")

Series = tuple[str, str, str, str, int, str]  # router, namespace, pool, inferencenode, device, model


def _key(labels: Mapping[str, str]) -> Series | None:
    try:
        device = int(labels.get("device", ""))
    except ValueError:
        return None
    router = labels.get("pod") or labels.get("instance") or "prometheus"
    namespace = labels.get("exported_namespace") or labels.get("namespace") or ""
    parts = (
        router,
        namespace,
        labels.get("pool", ""),
        labels.get("inferencenode", ""),
        device,
        labels.get("model", ""),
    )
    return parts if all(str(p) != "" for p in parts) else None


def stats_from_vectors(
    results: Mapping[str, Sequence[Mapping[str, Any]]], now: datetime
) -> list[RouterStats]:
    """Prometheus instant-vector results (``data.result`` per query name) -> one RouterStats per router."""
    acc: dict[Series, dict[str, Any]] = {}
    for name, vector in results.items():
        for sample in vector:
            labels = {str(k): str(v) for k, v in (sample.get("metric") or {}).items()}
            key = _key(labels)
            if key is None:
                continue
            value = float((sample.get("value") or [0, "0"])[1])
            d = acc.setdefault(key, {"failures": {}})
            if name == "failures":
                cause = labels.get("cause", "")
                if cause in CAUSES:
                    d["failures"][cause] = d["failures"].get(cause, 0) + int(value)
            else:
                d[name] = d.get(name, 0.0) + value
    routers: dict[str, list[DeviceStats]] = {}
    for (router, ns, pool, inode, device, model), d in sorted(acc.items()):
        failures = Failures(**d["failures"])
        completions = int(d.get("completions", 0))
        routers.setdefault(router, []).append(
            DeviceStats(
                key=DeviceKey(namespace=ns, pool=pool, inference_node=inode, device=device, model=model),
                requests=completions + failures.total,
                completions=completions,
                failures=failures,
                tokens=Tokens(completion=int(d.get("tokens", 0))),
                latency=Histogram(sum_seconds=max(0.0, d.get("latency", 0.0))),
                ttfb=Histogram(sum_seconds=max(0.0, d.get("ttfb", 0.0))),
            )
        )
    return [
        RouterStats(router=r, since=SINCE, observed_at=now, k="0", devices=tuple(devs))
        for r, devs in sorted(routers.items())
    ]


def prometheus_stats_fetcher(
    url: str, timeout: float = 10.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Callable[[], Awaitable[list[RouterStats]]]:
    """``GET {url}/api/v1/query`` per counter; a failed pass returns nothing (the next catches up)."""
    import aiohttp

    async def fetch() -> list[RouterStats]:
        results: dict[str, list[Mapping[str, Any]]] = {}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                for name, query in QUERIES.items():
                    async with session.get(
                        url.rstrip("/") + "/api/v1/query", params={"query": query}
                    ) as resp:
                        resp.raise_for_status()
                        body = await resp.json()
                    if body.get("status") != "success":
                        raise RuntimeError(f"{query}: {body.get('error') or body.get('status')}")
                    results[name] = list((body.get("data") or {}).get("result") or [])
        except Exception as exc:
            logger.warning("router counters from Prometheus %s unavailable: %s", url, exc)
            return []
        return stats_from_vectors(results, clock())

    return fetch

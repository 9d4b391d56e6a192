"""Hostile node agents, answered by the fault proxy in place of a pod's agent (#21).

Each behaviour answers one agent path (``/v1/hardware``) for one engine pod: garbage, a huge but
valid report, a slow or trickling answer, wrong types, an unknown engine, a GPU identity that flips
on every call, or GPU uuids cloned from another node. ``upstream()`` gives the honest answer, so a
behaviour changes only what it is about.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.faults.proxy import AgentBehaviour

Upstream = Callable[[], Awaitable[bytes]]


def garbage() -> AgentBehaviour:
    async def answer(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        return web.Response(body=b"\x00\xff{{not json at all", status=200, content_type="application/json")

    return answer


def huge(megabytes: int = 100) -> AgentBehaviour:
    """The honest report plus ``megabytes`` of padding: valid JSON, streamed in 1 MiB chunks."""

    async def answer(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        honest = await upstream()
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(honest[:-1] + b', "padding": "')
        chunk = b"x" * (1024 * 1024)
        try:
            for _ in range(megabytes):
                await resp.write(chunk)
            await resp.write(b'"}')
        except (ConnectionError, RuntimeError):
            pass  # the operator hung up: what a size limit looks like from here
        return resp

    return answer


def slow(seconds: float = 30.0) -> AgentBehaviour:
    """Answers honestly, but only after ``seconds`` (far beyond the operator's agent timeout)."""

    async def answer(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(body=await upstream(), status=200, content_type="application/json")

    return answer


def trickle(bytes_per_second: float = 20.0) -> AgentBehaviour:
    """The honest answer one byte at a time: never idle long enough for a read timeout to fire."""

    async def answer(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        body = await upstream()
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        try:
            for i in range(len(body)):
                await resp.write(body[i : i + 1])
                await asyncio.sleep(1 / bytes_per_second)
        except (ConnectionError, RuntimeError):
            pass  # the operator gave up waiting
        return resp

    return answer


def edited(edit: Callable[[dict[str, Any]], None]) -> AgentBehaviour:
    """The honest document with ``edit`` applied (valid JSON, content the operator must judge)."""

    async def answer(request: web.Request, upstream: Upstream) -> web.StreamResponse:
        doc = json.loads(await upstream())
        edit(doc)
        return web.json_response(doc)

    return answer


def wrong_types() -> AgentBehaviour:
    def edit(doc: dict[str, Any]) -> None:
        doc["report"]["devices"][0]["memory_total_mib"] = "lots"
        doc["report"]["devices"][0]["index"] = [0]
        doc["validation"] = "all good"

    return edited(edit)


def unknown_engine(name: str = "trtllm") -> AgentBehaviour:
    def edit(doc: dict[str, Any]) -> None:
        if isinstance(doc.get("engine"), dict):
            doc["engine"]["engine"] = name
        else:
            doc["engine"] = {"engine": name}

    return edited(edit)


def identity_flip() -> AgentBehaviour:
    """Every answer names a different GPU uuid (a box that swaps cards, or lies)."""

    def edit(doc: dict[str, Any]) -> None:
        for device in doc["report"]["devices"]:
            device["uuid"] = f"GPU-{uuid.uuid4()}"
        agent = doc.get("agent") or {}
        if isinstance(agent.get("device"), dict):
            agent["device"]["uuid"] = doc["report"]["devices"][0]["uuid"]

    return edited(edit)


def cloned_uuids(uuids: dict[int, str]) -> AgentBehaviour:
    """Reports another machine's GPU uuids (index -> uuid) for its own devices."""

    def edit(doc: dict[str, Any]) -> None:
        for device in doc["report"]["devices"]:
            if device["index"] in uuids:
                device["uuid"] = uuids[device["index"]]
        agent = doc.get("agent") or {}
        index = agent.get("deviceIndex")
        if isinstance(agent.get("device"), dict) and index in uuids:
            agent["device"]["uuid"] = uuids[index]

    return edited(edit)


def node_uuid(node: int, index: int) -> str:
    """A GPU uuid unique to (node, index): the emulator's nodes share their profile's uuids."""
    return f"GPU-{uuid.UUID(int=(node + 1) * 1000 + index)}"


def unique_uuids(node: int) -> AgentBehaviour:
    """An honest agent whose GPUs have uuids of their own (see :func:`node_uuid`)."""
    return cloned_uuids({i: node_uuid(node, i) for i in range(8)})

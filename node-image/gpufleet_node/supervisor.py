"""Runs the engine as a child process, decides when it is ready, restarts it, and drains it.

Readiness is deliberately strict: the engine's health endpoint must answer AND a one-token smoke
completion must succeed, because engines report healthy before they can actually serve (model still
compiling, wrong served-model name, CUDA graph capture failing on first request).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp

from gpufleet_node.config import Timings
from gpufleet_node.engines import EngineFlavour
from gpufleet_node.metrics import AgentMetrics, EngineSnapshot, MetricsParseError, normalise
from gpufleet_node.policy import RestartPolicy, RestartTracker


class State(StrEnum):
    STARTING = "Starting"
    LOADING = "Loading"
    READY = "Ready"
    UNHEALTHY = "Unhealthy"
    BACKOFF = "BackOff"
    CRASH_LOOP = "CrashLoop"
    BLOCKED = "Blocked"
    DRAINING = "Draining"
    STOPPED = "Stopped"


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    detail: str
    seconds: float = 0.0


def check_completion(body: Any) -> str | None:
    """Why a completion response is not a usable answer, or None when it is."""
    if not isinstance(body, dict):
        return "completion response is not a JSON object"
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return "completion response has no choices"
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return "completion response has no usage"
    tokens = usage.get("completion_tokens")
    if not isinstance(tokens, int) or tokens < 1:
        return f"completion produced no tokens (usage.completion_tokens={tokens!r})"
    return None


class EngineClient:
    """HTTP calls the agent makes to the engine on localhost."""

    def __init__(self, base_url: str, flavour: EngineFlavour, model: str, timings: Timings) -> None:
        self.base_url = base_url.rstrip("/")
        self.flavour = flavour
        self.model = model
        self.timings = timings
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No connection reuse: each engine restart invalidates kept-alive sockets.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def healthy(self) -> bool:
        timeout = aiohttp.ClientTimeout(total=self.timings.probe_timeout)
        try:
            async with self._client().get(
                self.base_url + self.flavour.health_path, timeout=timeout
            ) as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def smoke(self) -> SmokeResult:
        payload = {"model": self.model, "prompt": "Hello", "max_tokens": 1, "temperature": 0}
        timeout = aiohttp.ClientTimeout(total=self.timings.smoke_timeout)
        started = time.perf_counter()
        try:
            async with self._client().post(
                self.base_url + self.flavour.completions_path, json=payload, timeout=timeout
            ) as response:
                if response.status != 200:
                    text = (await response.text())[:200]
                    return SmokeResult(False, f"smoke completion returned HTTP {response.status}: {text}")
                body = await response.json(content_type=None)
        except TimeoutError:
            return SmokeResult(False, f"smoke completion timed out after {self.timings.smoke_timeout}s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return SmokeResult(False, f"smoke completion failed: {exc.__class__.__name__}: {exc}")
        problem = check_completion(body)
        if problem is not None:
            return SmokeResult(False, problem)
        return SmokeResult(True, "smoke completion succeeded", time.perf_counter() - started)

    async def scrape(self) -> EngineSnapshot:
        timeout = aiohttp.ClientTimeout(total=self.timings.probe_timeout)
        async with self._client().get(self.base_url + self.flavour.metrics_path, timeout=timeout) as response:
            if response.status != 200:
                raise MetricsParseError(f"engine /metrics returned HTTP {response.status}")
            text = await response.text()
        return normalise(self.flavour.name, text)


def reap_orphans(managed: set[int]) -> int:
    """Reap exited children that are not ours to wait for; returns how many were reaped.

    Only matters when the agent is PID 1 (a pod spec that overrides the image's tini entrypoint):
    engine workers re-parented to us would otherwise stay zombies. ``WNOWAIT`` peeks first so the
    exit status of the engine process itself is left for asyncio's child watcher.
    """
    reaped = 0
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if info is None or info.si_pid in managed:
            return reaped
        with contextlib.suppress(ChildProcessError):
            os.waitpid(info.si_pid, 0)
            reaped += 1


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """One engine process at a time: start, probe, restart with backoff, drain on stop."""

    def __init__(
        self,
        argv: Sequence[str],
        client: EngineClient,
        timings: Timings,
        policy: RestartPolicy,
        metrics: AgentMetrics,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.client = client
        self.timings = timings
        self.tracker = RestartTracker(policy)
        self.metrics = metrics
        self.env = env
        self.state = State.STARTING
        self.reason = "engine not started yet"
        self.ready = False
        self.proc: asyncio.subprocess.Process | None = None
        self.ready_since: float | None = None
        self._stop = asyncio.Event()
        self._scrape_now = asyncio.Event()
        self._set_state(State.STARTING, self.reason)

    # -- state -----------------------------------------------------------------------------------
    def _set_state(self, state: State, reason: str, *, ready: bool = False) -> None:
        self.state = state
        self.reason = reason
        self.ready = ready
        self.metrics.ready.set(1.0 if ready else 0.0)
        self.metrics.set_state(state.value, (s.value for s in State))

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "state": self.state.value,
            "reason": self.reason,
            "pid": self.proc.pid if self.proc is not None and self.proc.returncode is None else None,
            "consecutiveFailures": self.tracker.failures,
        }

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    # -- main loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Keep an engine running until stopped or until the crash-loop limit is reached."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            proc = await self._spawn()
            if isinstance(proc, str):
                outcome = proc
                ready_for = None
            else:
                outcome_or_stop = await self._watch(proc)
                if outcome_or_stop is None or self._stop.is_set():
                    return  # stopping: drain() owns the engine and the state from here
                outcome = outcome_or_stop
                ready_for = None if self.ready_since is None else loop.time() - self.ready_since
            self.ready_since = None
            self.metrics.engine.snapshot = None
            decision = self.tracker.record_failure(ready_for)
            if not decision.restart:
                self._set_state(
                    State.CRASH_LOOP,
                    f"engine failed {decision.failures} times in a row, giving up; last: {outcome}",
                )
                print(f"gpufleet-node: crash loop: {self.reason}", file=sys.stderr, flush=True)
                return
            self.metrics.restarts.labels(reason=outcome.split(":")[0]).inc()
            self._set_state(
                State.BACKOFF, f"{outcome}; restarting in {decision.delay:.2f}s (failure {decision.failures})"
            )
            print(f"gpufleet-node: {self.reason}", file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=decision.delay)

    async def _spawn(self) -> asyncio.subprocess.Process | str:
        """The started process, or why it could not be started."""
        self._set_state(State.STARTING, "starting engine process")
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, start_new_session=True, stdin=asyncio.subprocess.DEVNULL, env=self.env
            )
        except OSError as exc:
            return f"SpawnFailed: cannot execute {self.argv[0]!r}: {exc.strerror or exc}"
        self.proc = proc
        self.metrics.starts.inc()
        self._set_state(State.LOADING, "waiting for the engine's health endpoint")
        return proc

    async def _watch(self, proc: asyncio.subprocess.Process) -> str | None:
        """Wait until the process dies, must be killed, or a stop is requested (None)."""
        exit_task = asyncio.create_task(proc.wait())
        probe_task = asyncio.create_task(self._probe_loop(proc))
        stop_task = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait(
                {exit_task, probe_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (probe_task, stop_task):
                task.cancel()
        if exit_task in done:
            return f"EngineExited: exit code {proc.returncode}"
        exit_task.cancel()
        if stop_task in done or self._stop.is_set():
            return None
        error = probe_task.exception()
        reason = f"ProbeError: {error!r}" if error is not None else probe_task.result()
        print(f"gpufleet-node: killing engine: {reason}", file=sys.stderr, flush=True)
        await self._terminate(proc, graceful=False)
        return reason

    async def _probe_loop(self, proc: asyncio.subprocess.Process) -> str:
        """Drive readiness; returns the reason the engine must be killed."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        not_ready_since = started
        ever_ready = False
        while True:
            healthy = await self.client.healthy()
            if self._stop.is_set():
                return "Stopping"  # never flip a draining engine back to ready
            now = loop.time()
            if healthy and not self.ready:
                smoke = await self.client.smoke()
                if self._stop.is_set():
                    return "Stopping"
                now = loop.time()
                if smoke.ok:
                    ever_ready = True
                    self.ready_since = now
                    self.metrics.smoke_seconds.set(smoke.seconds)
                    self.metrics.startup_seconds.set(now - started)
                    self._set_state(State.READY, "engine healthy and smoke completion succeeded", ready=True)
                    self._scrape_now.set()  # publish engine metrics as soon as it serves
                else:
                    self._set_state(State.UNHEALTHY if ever_ready else State.LOADING, smoke.detail)
            elif not healthy and self.ready:
                not_ready_since = now
                self.ready_since = None
                self._set_state(State.UNHEALTHY, "engine health check failing")
            if not self.ready:
                limit = self.timings.unhealthy_timeout if ever_ready else self.timings.startup_timeout
                if now - not_ready_since > limit:
                    kind = "Unhealthy" if ever_ready else "StartupTimeout"
                    return f"{kind}: not ready for {limit:g}s ({self.reason})"
            await asyncio.sleep(self.timings.probe_interval)

    async def reap_forever(self, interval: float = 1.0) -> None:
        """Act as init for orphaned engine workers when the agent runs as PID 1."""
        while True:
            managed = {self.proc.pid} if self.proc is not None and self.proc.returncode is None else set()
            reap_orphans(managed)
            await asyncio.sleep(interval)

    # -- metrics ---------------------------------------------------------------------------------
    async def scrape_forever(self) -> None:
        """Refresh the normalised engine metrics in the background so /metrics never waits on the engine."""
        while True:
            if self.running():
                try:
                    self.metrics.engine.snapshot = await self.client.scrape()
                except (aiohttp.ClientError, TimeoutError, OSError, MetricsParseError):
                    self.metrics.scrape_errors.inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._scrape_now.wait(), timeout=self.timings.metrics_interval)
            self._scrape_now.clear()

    # -- stopping --------------------------------------------------------------------------------
    async def drain(self) -> None:
        """Stop accepting (not ready), let in-flight requests finish up to a deadline, then stop."""
        self._stop.set()
        self._set_state(State.DRAINING, "agent received a stop signal; draining in-flight requests")
        print("gpufleet-node: draining", file=sys.stderr, flush=True)
        proc = self.proc
        if proc is None or proc.returncode is not None:
            self._set_state(State.STOPPED, "engine stopped")
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.timings.drain_timeout
        # Give load balancers time to see us not-ready before judging the engine idle.
        await asyncio.sleep(min(self.timings.drain_min, self.timings.drain_timeout))
        while loop.time() < deadline and proc.returncode is None:
            inflight = await self._inflight()
            if inflight is None or inflight <= 0:
                break
            await asyncio.sleep(min(self.timings.probe_interval, 0.1))
        await self._terminate(proc, graceful=True)
        self._set_state(State.STOPPED, f"engine stopped (exit code {proc.returncode})")
        print(f"gpufleet-node: engine stopped, exit code {proc.returncode}", file=sys.stderr, flush=True)

    async def _inflight(self) -> float | None:
        try:
            snapshot = await self.client.scrape()
        except (aiohttp.ClientError, TimeoutError, OSError, MetricsParseError):
            return None
        running = snapshot.gauges.get("gpufleet_engine_requests_running")
        waiting = snapshot.gauges.get("gpufleet_engine_requests_waiting")
        if running is None and waiting is None:
            return None
        return (running or 0.0) + (waiting or 0.0)

    async def _terminate(self, proc: asyncio.subprocess.Process, *, graceful: bool) -> None:
        """SIGTERM the engine's process group, SIGKILL it if it does not exit in time."""
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.timings.kill_timeout)
            except TimeoutError:
                print("gpufleet-node: engine ignored SIGTERM, killing it", file=sys.stderr, flush=True)
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        # Engine workers share the group; none may outlive the engine's main process.
        _signal_group(proc.pid, signal.SIGKILL)

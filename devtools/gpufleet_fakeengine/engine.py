"""A fake vLLM / SGLang server: their health, models, completions and metrics, with failure switches.

Run as ``python -m gpufleet_fakeengine <the real engine command line...>``: the agent's launcher override
puts it in front of the command it would have run, so the fake reads the flavour, port and model from
that real command line (and records it so tests can check what the agent built).

Switches (environment):
  FAKE_ENGINE_FLAVOUR            vllm|sglang, overrides what the command line implies
  FAKE_ENGINE_STARTUP_DELAY      seconds before the server listens (model loading)
  FAKE_ENGINE_CRASH_AFTER        seconds after start at which the process exits with FAKE_ENGINE_EXIT_CODE
  FAKE_ENGINE_CRASH_TIMES        only crash on the first N starts (needs FAKE_ENGINE_STATE_DIR)
  FAKE_ENGINE_HANG               startup (never listens) | health (health never answers)
  FAKE_ENGINE_HEALTH_FAIL        1: health answers 503
  FAKE_ENGINE_HEALTH_FAIL_AFTER  seconds after start from which health answers 503
  FAKE_ENGINE_COMPLETION_FAIL    1: completions answer 500
  FAKE_ENGINE_COMPLETION_DELAY   seconds each completion takes (drain tests)
  FAKE_ENGINE_IGNORE_SIGTERM     1: ignore SIGTERM (the agent must escalate to SIGKILL)
  FAKE_ENGINE_ABRUPT_SIGTERM     1: exit at once on SIGTERM, dropping in-flight requests
  FAKE_ENGINE_MAX_RUNNING        concurrent requests before new ones queue (default 8)
  FAKE_ENGINE_STATE_DIR          directory where each start appends {pid, argv, flavour} to starts.jsonl
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DEFAULT_PORTS = {"vllm": 8000, "sglang": 30000}
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class UsageError(Exception):
    """The command line does not look like a vLLM or SGLang server command."""


@dataclass
class FakeArgs:
    flavour: str
    host: str
    port: int
    model: str
    served_names: list[str] = field(default_factory=list)


def _option(argv: Sequence[str], *names: str) -> list[str]:
    values: list[str] = []
    for i, token in enumerate(argv):
        for name in names:
            if token == name and i + 1 < len(argv):
                values.append(argv[i + 1])
            elif token.startswith(name + "="):
                values.append(token.split("=", 1)[1])
    return values


def parse_command(argv: Sequence[str], env: Mapping[str, str]) -> FakeArgs:
    """Read flavour, bind address and model from a real vLLM or SGLang command line."""
    flavour = env.get("FAKE_ENGINE_FLAVOUR") or ""
    if not flavour:
        joined = " ".join(argv)
        if "sglang" in joined:
            flavour = "sglang"
        elif "vllm" in joined:
            flavour = "vllm"
        else:
            raise UsageError(f"cannot tell the engine flavour from {list(argv)!r}")
    if flavour not in DEFAULT_PORTS:
        raise UsageError(f"unknown flavour {flavour!r}")
    ports = _option(argv, "--port")
    port = int(ports[-1]) if ports else DEFAULT_PORTS[flavour]
    hosts = _option(argv, "--host")
    host = hosts[-1] if hosts else "127.0.0.1"
    models = _option(argv, "--model-path", "--model")
    if not models and "serve" in argv:
        idx = list(argv).index("serve")
        if idx + 1 < len(argv) and not argv[idx + 1].startswith("-"):
            models = [argv[idx + 1]]
    if not models:
        raise UsageError(f"no model in {list(argv)!r}")
    served: list[str] = []
    for i, token in enumerate(argv):
        if token == "--served-model-name":
            j = i + 1
            while j < len(argv) and not argv[j].startswith("-"):
                served.append(argv[j])
                j += 1
    return FakeArgs(
        flavour=flavour, host=host, port=port, model=models[-1], served_names=served or [models[-1]]
    )


def _float_env(env: Mapping[str, str], name: str, default: float = 0.0) -> float:
    raw = env.get(name)
    return float(raw) if raw else default


class FakeEngine:
    def __init__(self, args: FakeArgs, env: Mapping[str, str]) -> None:
        self.args = args
        self.env = env
        self.started = time.monotonic()
        self.registry = CollectorRegistry()
        self.slots = asyncio.Semaphore(int(env.get("FAKE_ENGINE_MAX_RUNNING") or 8))
        self.running = 0
        self.waiting = 0
        self.max_running = int(env.get("FAKE_ENGINE_MAX_RUNNING") or 8)
        labels = ["model_name"]
        p = "vllm" if args.flavour == "vllm" else "sglang"
        if args.flavour == "vllm":
            self.g_waiting = Gauge("vllm:num_requests_waiting", "waiting", labels, registry=self.registry)
            self.g_running = Gauge("vllm:num_requests_running", "running", labels, registry=self.registry)
            self.g_kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage, 1 = 100%", labels,
                              registry=self.registry)
            self.c_success = Counter("vllm:request_success", "finished", [*labels, "finished_reason"],
                                     registry=self.registry)
        else:
            self.g_waiting = Gauge("sglang:num_queue_reqs", "queued", labels, registry=self.registry)
            self.g_running = Gauge("sglang:num_running_reqs", "running", labels, registry=self.registry)
            self.g_kv = Gauge("sglang:token_usage", "token usage", labels, registry=self.registry)
            self.c_requests = Counter("sglang:num_requests", "requests", labels, registry=self.registry)
            self.c_aborted = Counter("sglang:num_aborted_requests", "aborted", labels, registry=self.registry)
        self.c_prompt = Counter(f"{p}:prompt_tokens", "prompt tokens", labels, registry=self.registry)
        self.c_generation = Counter(f"{p}:generation_tokens", "generated tokens", labels,
                                    registry=self.registry)
        self.h_ttft = Histogram(f"{p}:time_to_first_token_seconds", "TTFT", labels,
                                buckets=TTFT_BUCKETS, registry=self.registry)
        self.model_label = {"model_name": args.served_names[0]}
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        self.g_waiting.labels(**self.model_label).set(self.waiting)
        self.g_running.labels(**self.model_label).set(self.running)
        self.g_kv.labels(**self.model_label).set(min(1.0, self.running / max(1, self.max_running)))

    def _record_failure(self) -> None:
        if self.args.flavour == "vllm":
            self.c_success.labels(finished_reason="abort", **self.model_label).inc()
        else:
            self.c_aborted.labels(**self.model_label).inc()

    # -- handlers --------------------------------------------------------------------------------
    async def health(self, _: web.Request) -> web.Response:
        if self.env.get("FAKE_ENGINE_HANG") == "health":
            await asyncio.sleep(3600)
        fail_after = self.env.get("FAKE_ENGINE_HEALTH_FAIL_AFTER")
        late_failure = fail_after is not None and time.monotonic() - self.started >= float(fail_after)
        if self.env.get("FAKE_ENGINE_HEALTH_FAIL") == "1" or late_failure:
            return web.Response(status=503, text="unhealthy\n")
        return web.Response(text="")

    async def models(self, _: web.Request) -> web.Response:
        created = int(time.time())
        data = [{"id": name, "object": "model", "created": created, "owned_by": self.args.flavour,
                 "root": self.args.model, "max_model_len": 4096} for name in self.args.served_names]
        return web.json_response({"object": "list", "data": data})

    async def completions(self, request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except ValueError:
            return web.json_response({"error": {"message": "invalid JSON", "code": 400}}, status=400)
        if not isinstance(body, dict) or body.get("model") not in self.args.served_names:
            model = body.get("model") if isinstance(body, dict) else None
            return web.json_response(
                {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError",
                           "code": 404}},
                status=404,
            )
        if body.get("stream"):
            return web.json_response({"error": {"message": "streaming not faked", "code": 400}}, status=400)
        prompt = body.get("prompt", "")
        prompt_text = " ".join(prompt) if isinstance(prompt, list) else str(prompt)
        prompt_tokens = max(1, len(prompt_text.split()))
        max_tokens = int(body.get("max_tokens") or 16)
        self.waiting += 1
        self._refresh_gauges()
        async with self.slots:
            self.waiting -= 1
            self.running += 1
            self._refresh_gauges()
            started = time.monotonic()
            try:
                await asyncio.sleep(_float_env(self.env, "FAKE_ENGINE_COMPLETION_DELAY"))
                if self.env.get("FAKE_ENGINE_COMPLETION_FAIL") == "1":
                    self._record_failure()
                    return web.json_response(
                        {"error": {"message": "fake engine: completion failure", "code": 500}}, status=500
                    )
                self.h_ttft.labels(**self.model_label).observe(max(0.0005, time.monotonic() - started))
                self.c_prompt.labels(**self.model_label).inc(prompt_tokens)
                self.c_generation.labels(**self.model_label).inc(max_tokens)
                if self.args.flavour == "vllm":
                    self.c_success.labels(finished_reason="length", **self.model_label).inc()
                else:
                    self.c_requests.labels(**self.model_label).inc()
            finally:
                self.running -= 1
                self._refresh_gauges()
        return web.json_response(
            {
                "id": f"cmpl-fake-{os.getpid()}-{time.monotonic_ns()}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "text": " ok" * max_tokens, "logprobs": None,
                             "finish_reason": "length"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens,
                          "total_tokens": prompt_tokens + max_tokens},
            }
        )

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        if self.args.flavour == "sglang":
            app.router.add_get("/health_generate", self.health)
            app.router.add_get("/get_model_info", self.models)
        else:
            app.router.add_get("/version", lambda _: _json({"version": "0.11.0-fake"}))
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/metrics", self.metrics)
        return app


async def _json(data: dict[str, Any]) -> web.Response:
    return web.json_response(data)


def _record_start(env: Mapping[str, str], argv: Sequence[str], args: FakeArgs) -> int:
    """Append this start to the state dir; returns how many starts happened before this one."""
    state_dir = env.get("FAKE_ENGINE_STATE_DIR")
    if not state_dir:
        return 0
    path = Path(state_dir) / "starts.jsonl"
    previous = len(path.read_text().splitlines()) if path.exists() else 0
    with path.open("a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "argv": list(argv), "flavour": args.flavour,
                             "port": args.port, "model": args.model,
                             "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES")}) + "\n")
    return previous


async def serve(argv: Sequence[str], env: Mapping[str, str]) -> int:
    args = parse_command(argv, env)
    previous_starts = _record_start(env, argv, args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if env.get("FAKE_ENGINE_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif env.get("FAKE_ENGINE_ABRUPT_SIGTERM") == "1":
        loop.add_signal_handler(signal.SIGTERM, os._exit, 143)
    else:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    crash_after = env.get("FAKE_ENGINE_CRASH_AFTER")
    crash_times = env.get("FAKE_ENGINE_CRASH_TIMES")
    will_crash = crash_after is not None and (crash_times is None or previous_starts < int(crash_times))
    exit_code = int(env.get("FAKE_ENGINE_EXIT_CODE") or 1)
    if will_crash:
        def crash() -> None:
            print(f"fake-engine: crashing with exit code {exit_code}", file=sys.stderr, flush=True)
            os._exit(exit_code)
        loop.call_later(float(crash_after or 0), crash)

    delay = _float_env(env, "FAKE_ENGINE_STARTUP_DELAY")
    if env.get("FAKE_ENGINE_HANG") == "startup":
        delay = 3600.0
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)
    if stop.is_set():
        return 0
    engine = FakeEngine(args, env)
    runner = web.AppRunner(engine.app(), access_log=None, shutdown_timeout=30.0)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    print(f"fake-engine: {args.flavour} serving {args.model} on {args.host}:{args.port}",
          file=sys.stderr, flush=True)
    await stop.wait()
    # Like uvicorn: stop listening, let in-flight requests finish, then exit.
    await runner.cleanup()
    return 0


def _die_with_parent() -> None:
    """Exit when the agent that started us dies, so a killed test run leaves no stray fake engines."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _die_with_parent()
    try:
        return asyncio.run(serve(argv, os.environ))
    except UsageError as exc:
        print(f"fake-engine: {exc}", file=sys.stderr)
        return 2

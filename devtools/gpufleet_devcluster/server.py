"""The HTTP front of the emulator: Kubernetes REST paths, discovery, watch streams, pod proxy."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gpufleet_devcluster import protobody
from gpufleet_devcluster.errors import APIError
from gpufleet_devcluster.resources import JsonObj, ResourceType
from gpufleet_devcluster.selectors import parse_field_selector, parse_label_selector
from gpufleet_devcluster.store import Entry, Store, Watcher
from gpufleet_devcluster.tables import table, wants_table

logger = logging.getLogger(__name__)

KUBERNETES_VERSION = {
    "major": "1",
    "minor": "36",
    "gitVersion": "v1.36.0-gpufleet-devcluster",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.22",
    "compiler": "gc",
    "platform": "linux/amd64",
}

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
}
UNSUPPORTED_BODIES = frozenset({"application/vnd.kubernetes.protobuf", "application/cbor"})
#: A protobuf request body decoded to its JSON object (kubectl's typed clients send protobuf).
DECODED_BODY = web.RequestKey("gpufleet_decoded_body", dict)
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

ProxyHandler = Callable[[web.Request, JsonObj, int | None, str], Awaitable[web.StreamResponse]]
LogHandler = Callable[[JsonObj, str | None], str]


@dataclass(frozen=True, slots=True)
class Request:
    seq: int
    verb: str
    resource: str  # plural, with "/subresource" when one is used ("pods/status")
    namespace: str | None
    name: str | None
    code: int
    user_agent: str


@dataclass
class RequestLog:
    """Every API request the server answered, for API-calls-per-object and writes-after-convergence."""

    records: list[Request] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(
        self, verb: str, resource: str, namespace: str | None, name: str | None, code: int, agent: str
    ) -> None:
        self.records.append(Request(len(self.records), verb, resource, namespace, name, code, agent))
        self.counts[(verb, resource)] += 1

    def count(self, verb: str | None = None, resource: str | None = None, *, since: int = 0) -> int:
        """Requests matching verb/resource (None = any); `since` (from mark()) counts only later ones."""
        if since == 0:
            return sum(
                n
                for (v, r), n in self.counts.items()
                if (verb is None or v == verb) and (resource is None or r == resource)
            )
        return sum(
            1
            for rec in self.records[since:]
            if (verb is None or rec.verb == verb) and (resource is None or rec.resource == resource)
        )

    def mark(self) -> int:
        """A point in the request stream; pass it as `since` to count only later requests."""
        return len(self.records)

    def writes(self, *, since: int = 0) -> list[Request]:
        return [rec for rec in self.records[since:] if rec.verb in WRITE_VERBS]

    def by_verb(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (verb, _), n in self.counts.items():
            out[verb] += n
        return dict(out)

    def reset(self) -> None:
        self.records.clear()
        self.counts.clear()


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type="application/json"
    )


def _raw(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


@dataclass
class _Target:
    rtype: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    subpath: str


class APIServer:
    """aiohttp application serving a Store the way kube-apiserver would."""

    def __init__(self, store: Store, *, bookmark_interval: float = 1.0) -> None:
        self.store = store
        self.requests = RequestLog()
        self.bookmark_interval = bookmark_interval
        self.proxy_handler: ProxyHandler | None = None
        self.log_handler: LogHandler | None = None
        self._watchers: set[Watcher] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for w in list(self._watchers):
            w.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------------------------ routing

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        verb, resource, ns, name = request.method.lower(), "", None, None
        try:
            if not parts or parts[0] not in ("api", "apis") or len(parts) <= (2 if parts[0] == "api" else 3):
                # A non-resource URL (discovery, /version, health): counted by its path, as RBAC names it.
                verb, resource = "get", "/" + "/".join(parts)
                response = self._non_resource(parts)
                self.requests.add(
                    verb, resource, None, None, response.status, request.headers.get("User-Agent", "")
                )
                return response
            target = self._target(parts)
            ns, name = target.namespace, target.name
            resource = target.rtype.plural + (f"/{target.subresource}" if target.subresource else "")
            verb = self._verb(request, target)
            agent = request.headers.get("User-Agent", "")
            if (
                request.can_read_body
                and request.content_type == protobody.CONTENT_TYPE
                and verb in ("create", "update")
            ):
                # kubectl's typed clients (create namespace/configmap) send protobuf, never JSON.
                request[DECODED_BODY] = protobody.decode(await request.read())
            elif request.can_read_body and request.content_type in UNSUPPORTED_BODIES:
                # protobuf/CBOR: client-go falls back to JSON on 415, like with a server lacking them.
                raise APIError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format ({request.content_type}) "
                    "- accepted media types include: application/json, application/yaml",
                )
            if verb == "watch":  # long-lived: count it when it starts
                self.requests.add(verb, resource, ns, name, 200, agent)
                return await self._dispatch(request, target, verb)
            response = await self._dispatch(request, target, verb)
            self.requests.add(verb, resource, ns, name, response.status, agent)
            return response
        except APIError as exc:
            self.requests.add(verb, resource, ns, name, exc.code, request.headers.get("User-Agent", ""))
            return _json(exc.status(), exc.code)
        except json.JSONDecodeError as exc:
            return _json(
                APIError(400, "BadRequest", f"invalid JSON in the request body: {exc}").status(), 400
            )
        except (ValueError, TypeError, KeyError) as exc:  # malformed parameters or bodies
            logger.debug("devcluster: bad request %s %s", request.method, request.path, exc_info=True)
            return _json(APIError(400, "BadRequest", f"{type(exc).__name__}: {exc}").status(), 400)

    def _verb(self, request: web.Request, t: _Target) -> str:
        method = request.method
        if t.subresource in ("proxy", "log"):
            return "get" if method == "GET" else method.lower()
        if method == "GET":
            if t.name is None:
                return "watch" if _flag(request.query.get("watch")) else "list"
            return "get"
        return {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if t.name is not None else "deletecollection",
        }.get(method, method.lower())

    def _target(self, parts: list[str]) -> _Target:
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        rtype = self.store.resolve(group, version, rest[0])
        if namespace is not None and not rtype.namespaced:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in rtype.subresources:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        return _Target(rtype, namespace, name, sub, "/" + "/".join(rest[3:]) if len(rest) > 3 else "/")

    def _non_resource(self, parts: list[str]) -> web.StreamResponse:
        path = "/" + "/".join(parts)
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/version":
            return _json(KUBERNETES_VERSION)
        if path == "/api":
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
                }
            )
        if path == "/api/v1":
            return _json(self._resource_list("", "v1"))
        if path == "/apis":
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()})
        if len(parts) == 2 and parts[0] == "apis":
            for g in self._groups():
                if g["name"] == parts[1]:
                    return _json({"kind": "APIGroup", "apiVersion": "v1", **g})
        if len(parts) == 3 and parts[0] == "apis":
            body = self._resource_list(parts[1], parts[2])
            if body["resources"]:
                return _json(body)
        if path == "/":
            return _json({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/openapi/v3", "/version"]})
        if path == "/openapi/v3":
            gvs = {(r.group, r.version) for r in self.store.types.values()}
            return _json(
                {
                    "paths": {
                        (f"apis/{g}/{v}" if g else f"api/{v}"): {
                            "serverRelativeURL": f"/openapi/v3/{'apis/' + g if g else 'api'}/{v}"
                        }
                        for g, v in sorted(gvs)
                    }
                }
            )
        if path.startswith("/openapi/v3/"):
            rest = parts[2:]
            group, version = (
                ("", rest[1])
                if rest[:1] == ["api"] and len(rest) == 2
                else ((rest[1], rest[2]) if rest[:1] == ["apis"] and len(rest) == 3 else ("?", "?"))
            )
            doc = self._openapi(group, version)
            if doc["paths"]:
                return _json(doc)
        raise APIError(404, "NotFound", "the server could not find the requested resource")

    def _openapi(self, group: str, version: str) -> JsonObj:
        """A minimal OpenAPI v3 document for one group/version: enough for kubectl to see that PATCH
        takes `fieldValidation` (so `kubectl apply` validates server side instead of downloading
        schemas); it describes operations, not object schemas."""
        param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        paths: JsonObj = {}
        for rtype in self.store.types.values():
            if rtype.group != group or rtype.version != version:
                continue
            prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
            ns = "/namespaces/{namespace}" if rtype.namespaced else ""
            gvk = {"group": group, "version": version, "kind": rtype.kind}
            paths[f"{prefix}{ns}/{rtype.plural}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": [param],
                    "responses": {"200": {"description": "OK"}},
                },
                "put": {
                    "x-kubernetes-action": "put",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": [param],
                    "responses": {"200": {"description": "OK"}},
                },
            }
            paths[f"{prefix}{ns}/{rtype.plural}"] = {
                "post": {
                    "x-kubernetes-action": "post",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": [param],
                    "responses": {"201": {"description": "Created"}},
                },
            }
        return {
            "openapi": "3.0.0",
            "info": {
                "title": "Kubernetes (gpufleet devcluster)",
                "version": KUBERNETES_VERSION["gitVersion"],
            },
            "paths": paths,
            "components": {"schemas": self._crd_schemas(group, version)},
        }

    def _crd_schemas(self, group: str, version: str) -> JsonObj:
        """The custom resources' schemas, as the real server publishes them: named by reversed
        group, tagged with their group/version/kind, so `kubectl explain` finds and renders them."""
        schemas: JsonObj = {}
        for rtype in self.store.types.values():
            if rtype.crd is None or rtype.group != group or rtype.version != version:
                continue
            for ver in rtype.crd["spec"].get("versions") or []:
                if ver.get("name") != version:
                    continue
                schema = copy.deepcopy((ver.get("schema") or {}).get("openAPIV3Schema") or {})
                gvk = {"group": group, "version": version, "kind": rtype.kind}
                schema["x-kubernetes-group-version-kind"] = [gvk]
                props = schema.setdefault("properties", {})
                props.setdefault(
                    "apiVersion",
                    {
                        "type": "string",
                        "description": "APIVersion defines the versioned schema of this object.",
                    },
                )
                props.setdefault(
                    "kind",
                    {
                        "type": "string",
                        "description": "Kind is a string value representing the REST resource.",
                    },
                )
                props.setdefault("metadata", {"type": "object", "description": "Standard object's metadata."})
                reverse = ".".join(reversed(group.split(".")))
                schemas[f"{reverse}.{version}.{rtype.kind}"] = schema
        return schemas

    def _groups(self) -> list[JsonObj]:
        versions: dict[str, list[str]] = {}
        for rtype in self.store.types.values():
            if rtype.group and rtype.version not in versions.setdefault(rtype.group, []):
                versions[rtype.group].append(rtype.version)
        out = []
        for group, vers in versions.items():
            gv = [{"groupVersion": f"{group}/{v}", "version": v} for v in vers]
            out.append({"name": group, "versions": gv, "preferredVersion": gv[0]})
        return out

    def _resource_list(self, group: str, version: str) -> JsonObj:
        resources: list[JsonObj] = []
        for rtype in self.store.types.values():
            if rtype.group != group or rtype.version != version:
                continue
            item: JsonObj = {
                "name": rtype.plural,
                "singularName": rtype.singular,
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": list(rtype.verbs),
            }
            if rtype.short_names:
                item["shortNames"] = list(rtype.short_names)
            if rtype.categories:
                item["categories"] = list(rtype.categories)
            resources.append(item)
            for sub in rtype.subresources:
                kind, verbs = rtype.kind, ["get", "patch", "update"]
                if sub == "proxy":
                    kind, verbs = f"{rtype.kind}ProxyOptions", ["create", "delete", "get", "patch", "update"]
                elif sub == "log":
                    verbs = ["get"]
                elif sub == "finalize":
                    verbs = ["update"]
                elif sub == "scale":
                    kind = "Scale"
                resources.append(
                    {
                        "name": f"{rtype.plural}/{sub}",
                        "singularName": "",
                        "namespaced": rtype.namespaced,
                        "kind": kind,
                        "verbs": verbs,
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}".lstrip("/"),
            "resources": resources,
        }

    # ------------------------------------------------------------------------------------ handlers

    async def _dispatch(self, request: web.Request, t: _Target, verb: str) -> web.StreamResponse:
        if "dryRun" in request.query:
            # Server-side dry run of writes: admission and validation run, nothing is stored.
            if request.query.getall("dryRun") != ["All"]:
                raise APIError(400, "BadRequest", "dryRun: Unsupported value: only All is supported")
            if verb not in ("create", "update", "patch"):
                raise APIError(400, "BadRequest", f"the devcluster emulator has no dryRun for {verb}")
            await request.read()
            self.store.dry_run = True
            try:
                return await self._dispatch_strict(request, t, verb)
            finally:
                self.store.dry_run = False
        return await self._dispatch_strict(request, t, verb)

    async def _dispatch_strict(self, request: web.Request, t: _Target, verb: str) -> web.StreamResponse:
        strict = request.query.get("fieldValidation") == "Strict"
        if strict and verb in ("create", "update", "patch"):
            await request.read()  # cached by aiohttp: nothing awaits I/O once the flag is set
            self.store.strict_fields = True
            try:
                return await self._dispatch_inner(request, t, verb)
            finally:
                self.store.strict_fields = False
        return await self._dispatch_inner(request, t, verb)

    async def _dispatch_inner(self, request: web.Request, t: _Target, verb: str) -> web.StreamResponse:
        store, rtype, q = self.store, t.rtype, request.query
        if t.subresource == "proxy":
            return await self._proxy(request, t)
        if t.subresource == "log":
            assert t.name is not None
            pod = store.get(rtype, t.namespace, t.name).obj
            text = self.log_handler(pod, q.get("container")) if self.log_handler else ""
            return web.Response(text=text, content_type="text/plain")
        if t.name is None:
            if verb in ("list", "watch", "deletecollection"):
                labels = parse_label_selector(q.get("labelSelector"))
                fields = parse_field_selector(q.get("fieldSelector"), rtype.selectable_fields, rtype.kind)
                if verb == "watch":
                    return await self._watch(request, t, labels, fields)
                if verb == "deletecollection":
                    options = await _body_or_none(request)
                    deleted = store.delete_collection(rtype, t.namespace, labels, fields, options)
                    return self._list_response(rtype, deleted, store.rv)
                limit = int(q["limit"]) if q.get("limit") else None
                result = store.list_entries(
                    rtype, t.namespace, labels, fields, limit=limit, continue_token=q.get("continue")
                )
                if wants_table(request.headers.get("Accept", "")):
                    return _json(table(rtype, [e.obj for e in result.items], str(result.resource_version)))
                return self._list_response(
                    rtype, result.items, result.resource_version, result.continue_token, result.remaining
                )
            if verb == "create":
                entry = store.create(rtype, t.namespace, await _json_body(request))
                return _raw(entry.raw, 201)
            raise APIError(405, "MethodNotAllowed", f"{request.method} is not allowed on a collection")
        if verb == "get":
            entry = store.get(rtype, t.namespace, t.name)
            if wants_table(request.headers.get("Accept", "")):
                return _json(table(rtype, [entry.obj], entry.obj["metadata"]["resourceVersion"]))
            return _raw(entry.raw)
        if verb == "update":
            entry = store.update(
                rtype, t.namespace, t.name, await _json_body(request), subresource=t.subresource
            )
            return _raw(entry.raw)
        if verb == "patch":
            ctype = request.content_type
            patch_type = PATCH_TYPES.get(ctype)
            if patch_type is None:
                raise APIError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format ({ctype}) - accepted media "
                    "types include: application/json-patch+json, application/merge-patch+json, "
                    "application/strategic-merge-patch+json",
                )
            entry = store.patch(
                rtype,
                t.namespace,
                t.name,
                patch_type,
                json.loads(await request.read()),
                subresource=t.subresource,
            )
            return _raw(entry.raw)
        if verb == "delete":
            options = await _body_or_none(request)
            if options is None:
                options = {k: v for k, v in (("propagationPolicy", q.get("propagationPolicy")),) if v}
                if q.get("gracePeriodSeconds") is not None:
                    options["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            entry = store.delete(rtype, t.namespace, t.name, options)
            return _raw(entry.raw)
        raise APIError(405, "MethodNotAllowed", f"{request.method} is not allowed here")

    def _list_response(
        self, rtype: ResourceType, items: list[Entry], rv: int, cont: str = "", remaining: int | None = None
    ) -> web.Response:
        meta: JsonObj = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
            if remaining is not None:
                meta["remainingItemCount"] = remaining
        head = json.dumps(
            {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version, "metadata": meta},
            separators=(",", ":"),
        ).encode()
        return _raw(head[:-1] + b',"items":[' + b",".join(e.raw for e in items) + b"]}")

    async def _watch(self, request: web.Request, t: _Target, labels: Any, fields: Any) -> web.StreamResponse:
        q = request.query
        send_initial = True if _flag(q.get("sendInitialEvents")) else None
        watcher = self.store.watch(
            t.rtype, t.namespace, labels, fields, since=q.get("resourceVersion"), send_initial=send_initial
        )
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        )
        await response.prepare(request)
        if watcher.error is not None:
            await response.write(
                json.dumps({"type": "ERROR", "object": watcher.error.status()}).encode() + b"\n"
            )
            return response
        self._watchers.add(watcher)
        bookmarks = _flag(q.get("allowWatchBookmarks"))
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        deadline = time.monotonic() + timeout if timeout is not None else None
        kind, api_version = t.rtype.kind, t.rtype.api_version
        as_table = wants_table(request.headers.get("Accept", ""))
        headers_sent = False
        initial_end_pending = bookmarks and send_initial is True
        try:
            while not watcher.closed:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    wait = min(wait, deadline - now) if wait is not None else deadline - now
                await watcher.wait(wait)
                items = watcher.drain()
                if items and as_table:  # kubectl get -w: each event carries a one-row Table
                    lines = []
                    for kind_, entry in items:
                        tbl = table(
                            t.rtype,
                            [entry.obj],
                            entry.obj["metadata"]["resourceVersion"],
                            headers=not headers_sent,
                        )
                        headers_sent = True
                        lines.append(json.dumps({"type": kind_, "object": tbl}).encode() + b"\n")
                    await response.write(b"".join(lines))
                elif items:
                    await response.write(
                        b"".join(
                            b'{"type":"' + kind_.encode() + b'","object":' + entry.raw + b"}\n"
                            for kind_, entry in items
                        )
                    )
                if (bookmarks and not items and not watcher.pending) or initial_end_pending:
                    meta: JsonObj = {"resourceVersion": str(self.store.rv)}
                    if initial_end_pending:
                        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
                        initial_end_pending = False
                    await response.write(
                        json.dumps(
                            {
                                "type": "BOOKMARK",
                                "object": {"kind": kind, "apiVersion": api_version, "metadata": meta},
                            }
                        ).encode()
                        + b"\n"
                    )
        except ConnectionResetError:
            pass  # the client went away
        finally:
            watcher.stop()
            self._watchers.discard(watcher)
        return response

    async def _proxy(self, request: web.Request, t: _Target) -> web.StreamResponse:
        if t.name is None or t.rtype.plural != "pods":
            raise APIError(404, "NotFound", "proxying is only emulated for pods")
        name, port = t.name, None
        bits = name.split(":")
        if len(bits) == 3:
            _, name, port_s = bits
            port = int(port_s)
        elif len(bits) == 2:
            name, port_s = bits
            port = int(port_s)
        pod = self.store.get(t.rtype, t.namespace, name).obj
        if self.proxy_handler is None:
            raise APIError(503, "ServiceUnavailable", f"no agent is emulated for pod {name!r}")
        return await self.proxy_handler(request, pod, port, t.subpath)


async def _json_body(request: web.Request) -> Any:
    """The request's object: JSON as sent, or what a protobuf body decoded to."""
    if DECODED_BODY in request:
        return request[DECODED_BODY]
    return await request.json()


async def _body_or_none(request: web.Request) -> JsonObj | None:
    if not request.can_read_body:
        return None
    raw = await request.read()
    if not raw.strip():
        return None
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise APIError(400, "BadRequest", "DeleteOptions must be a JSON object")
    return body

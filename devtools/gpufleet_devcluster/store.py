"""The object store: the API server's semantics, O(1)/O(log n) per operation.

Stored objects are immutable by convention: a write replaces the object with a new dict (sharing
unchanged sub-trees) and never mutates one in place. That lets watch events, the write history
and cached JSON encodings all point at the same objects without copying.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from gpufleet_devcluster import errors
from gpufleet_devcluster.errors import APIError
from gpufleet_devcluster.patch import json_patch, merge_patch, strategic_merge_patch
from gpufleet_devcluster.resources import CRDError, JsonObj, ResourceType, builtin_types, types_from_crd
from gpufleet_devcluster.selectors import FieldSelector, LabelSelector

ObjKey = tuple[str, str]  # (namespace or "", name)


class Validator(Protocol):
    """Checks (and defaults/prunes) a custom resource write; raises a 422 APIError when invalid."""

    def __call__(
        self, rtype: ResourceType, obj: JsonObj, old: JsonObj | None, *, strict: bool = False
    ) -> JsonObj: ...


_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_stamp: list[Any] = [0, ""]


def now_rfc3339() -> str:
    """The current second as RFC 3339 (formatted once per second: every write stamps something)."""
    second = int(time.time())
    if second != _stamp[0]:
        _stamp[0] = second
        _stamp[1] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(_stamp[1])


class Entry:
    """A stored object plus its lazily cached JSON encoding (shared by GET, LIST and watch)."""

    __slots__ = ("_raw", "obj")

    def __init__(self, obj: JsonObj) -> None:
        self.obj = obj
        self._raw: bytes | None = None

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = _dumps(self.obj).encode()
        return self._raw

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.obj["metadata"].get("labels") or {}
        return labels


@dataclass(slots=True)
class Event:
    """One write: what watchers receive and what `Store.history` records."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    resource: ResourceType
    entry: Entry
    old: Entry | None
    actor: str

    @property
    def obj(self) -> JsonObj:
        return self.entry.obj

    @property
    def key(self) -> ObjKey:
        meta = self.entry.obj["metadata"]
        return meta.get("namespace", ""), meta["name"]


class Watcher:
    """One open watch: a filter and a queue of (type, entry) filled synchronously by the store."""

    def __init__(self, bucket: Bucket, namespace: str | None, labels: LabelSelector, fields: FieldSelector):
        self.bucket = bucket
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.pending: deque[tuple[str, Entry]] = deque()
        self.error: APIError | None = None
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def _matches(self, entry: Entry | None) -> bool:
        if entry is None:
            return False
        if self.labels and not self.labels.matches(entry.labels):
            return False
        return not self.fields or self.fields.matches(entry.obj)

    def offer(self, event: Event) -> None:
        if self.namespace is not None and event.entry.obj["metadata"].get("namespace") != self.namespace:
            return
        if not self.labels and not self.fields:
            self._push(event.type, event.entry)
            return
        now = self._matches(event.entry)
        if event.type == "MODIFIED":
            before = self._matches(event.old)
            if now and not before:
                self._push("ADDED", event.entry)
            elif before and not now:
                # The real watch cache sends the previous state, stamped with the new version.
                assert event.old is not None
                old = dict(event.old.obj)
                old["metadata"] = {**old["metadata"], "resourceVersion": str(event.rv)}
                self._push("DELETED", Entry(old))
            elif now:
                self._push("MODIFIED", event.entry)
        elif now:
            self._push(event.type, event.entry)

    def _push(self, kind: str, entry: Entry) -> None:
        self.pending.append((kind, entry))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, seconds: float | None) -> None:
        """Wait until something is pending or the watch is closed (or the seconds pass)."""
        if self.pending or self.closed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._waiter), seconds)
        except TimeoutError:
            pass
        finally:
            self._waiter = None

    def drain(self) -> list[tuple[str, Entry]]:
        items = list(self.pending)
        self.pending.clear()
        return items

    def stop(self) -> None:
        self.bucket.watchers.discard(self)


class Bucket:
    """All objects of one resource (every version of it shares the bucket)."""

    def __init__(self, rtype: ResourceType, history_window: int) -> None:
        self.rtype = rtype
        self.objects: dict[ObjKey, Entry] = {}
        self.by_namespace: dict[str, dict[ObjKey, Entry]] = {}
        self.label_index: dict[tuple[str, str], set[ObjKey]] = {}
        self.watchers: set[Watcher] = set()
        self.log: list[Event] = []
        self.log_rvs: list[int] = []
        self.compacted_rv = 0  # watches from an older version get 410 Gone
        self.window = history_window

    def put(self, key: ObjKey, entry: Entry, old: Entry | None) -> None:
        self.objects[key] = entry
        if old is not None:
            old._raw = None  # superseded: only a replay from the event log may need it (re-encoded then)
        self.by_namespace.setdefault(key[0], {})[key] = entry
        old_labels = old.labels if old is not None else {}
        new_labels = entry.labels
        if old_labels is new_labels:
            return
        for kv in old_labels.items():
            if new_labels.get(kv[0]) != kv[1]:
                s = self.label_index.get(kv)
                if s is not None:
                    s.discard(key)
                    if not s:
                        del self.label_index[kv]
        for kv in new_labels.items():
            if old_labels.get(kv[0]) != kv[1]:
                self.label_index.setdefault(kv, set()).add(key)

    def remove(self, key: ObjKey) -> Entry:
        entry = self.objects.pop(key)
        ns = self.by_namespace.get(key[0])
        if ns is not None:
            ns.pop(key, None)
            if not ns:
                del self.by_namespace[key[0]]
        for kv in entry.labels.items():
            s = self.label_index.get(kv)
            if s is not None:
                s.discard(key)
                if not s:
                    del self.label_index[kv]
        return entry

    def record(self, event: Event) -> None:
        self.log.append(event)
        self.log_rvs.append(event.rv)
        if len(self.log) > 2 * self.window:
            cut = len(self.log) - self.window
            self.compacted_rv = self.log_rvs[cut - 1]
            del self.log[:cut]
            del self.log_rvs[:cut]
        for w in list(self.watchers):
            w.offer(event)

    def events_since(self, rv: int) -> list[Event]:
        return self.log[bisect.bisect_right(self.log_rvs, rv) :]

    def select(self, namespace: str | None, labels: LabelSelector, fields: FieldSelector) -> list[Entry]:
        """Matching entries in key order (namespace, name), like the real server's lists.

        Equality label terms intersect the label index; a selector made only of such terms needs
        no further check, so selecting 10,000 pods by label is a set operation and a sort.
        """
        objects = self.objects
        name = fields.name_equals()
        exact = False
        keys: Iterable[ObjKey]
        if name is not None and namespace is not None:
            keys = [(namespace, name)] if (namespace, name) in objects else []
        else:
            pairs = list(labels.equalities())
            if pairs:
                sets = sorted((self.label_index.get(p, set()) for p in pairs), key=len)
                keys = set(sets[0]).intersection(*sets[1:]) if len(sets) > 1 else sets[0]
                if namespace is not None:
                    keys = [k for k in keys if k[0] == namespace]
                exact = labels.only_equalities()
            elif namespace is not None:
                keys = self.by_namespace.get(namespace, {})
            else:
                keys = objects
        entries = [objects[k] for k in sorted(keys)]
        if labels and not exact:
            entries = [e for e in entries if labels.matches(e.labels)]
        if fields:
            entries = [e for e in entries if fields.matches(e.obj)]
        return entries


@dataclass
class ListResult:
    items: list[Entry]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


@dataclass
class Store:
    """In-memory API server state. All methods are synchronous and must run on one thread."""

    history_window: int = 100_000
    keep_history: bool = True
    rv: int = 1
    types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    buckets: dict[tuple[str, str], Bucket] = field(default_factory=dict)
    history: list[Event] = field(default_factory=list)
    listeners: list[Callable[[Event], None]] = field(default_factory=list)
    validator: Validator | None = None
    # fieldValidation=Strict for the write in progress: unknown fields are a 422, not pruned.
    strict_fields: bool = False
    # Set by the server for `?dryRun=All` writes: validate and answer, persist nothing.
    dry_run: bool = False
    # Set by the simulated kubelet: pods for which deletion is graceful (the kubelet finishes it).
    graceful_pod: Callable[[JsonObj], bool] | None = None
    by_uid: dict[str, tuple[tuple[str, str], ObjKey]] = field(default_factory=dict)
    dependents: dict[str, set[tuple[tuple[str, str], ObjKey]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rtype in builtin_types():
            self.register(rtype)

    # ------------------------------------------------------------------------------------ registry

    def register(self, rtype: ResourceType) -> None:
        self.types[(rtype.group, rtype.version, rtype.plural)] = rtype
        bkey = (rtype.group, rtype.plural)
        if bkey not in self.buckets:
            self.buckets[bkey] = Bucket(rtype, self.history_window)
        else:
            self.buckets[bkey].rtype = rtype

    def unregister_crd(self, crd_name: str) -> None:
        for tkey, rtype in list(self.types.items()):
            if rtype.crd_name == crd_name:
                del self.types[tkey]
        plural, group = crd_name.split(".", 1)
        bucket = self.buckets.pop((group, plural), None)
        if bucket is not None:
            for key in list(bucket.objects):
                self._remove(bucket, key, "apiextensions-controller")
            for w in list(bucket.watchers):
                w.close()

    def resolve(self, group: str, version: str, plural: str) -> ResourceType:
        rtype = self.types.get((group, version, plural))
        if rtype is None:
            raise APIError(
                404,
                "NotFound",
                "the server could not find the requested resource",
                details={"group": group, "kind": plural},
            )
        return rtype

    def type_for(self, api_version: str, kind: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        for rtype in self.types.values():
            if rtype.group == group and rtype.version == version and rtype.kind == kind:
                return rtype
        raise APIError(404, "NotFound", f"no resource of kind {kind!r} in {api_version!r}")

    def bucket(self, rtype: ResourceType) -> Bucket:
        return self.buckets[(rtype.group, rtype.plural)]

    # ------------------------------------------------------------------------------------ reads

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Entry:
        entry = self.bucket(rtype).objects.get((namespace or "", name))
        if entry is None:
            raise errors.not_found(rtype.plural, name, rtype.group)
        return entry

    def find(self, rtype: ResourceType, namespace: str | None, name: str) -> JsonObj | None:
        entry = self.bucket(rtype).objects.get((namespace or "", name))
        return entry.obj if entry is not None else None

    def objects(self, rtype: ResourceType, namespace: str | None = None) -> list[JsonObj]:
        return [e.obj for e in self.bucket(rtype).select(namespace, LabelSelector(), FieldSelector())]

    def list_entries(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        bucket = self.bucket(rtype)
        entries = bucket.select(namespace, labels, fields)
        list_rv = self.rv
        if continue_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = (token["ns"], token["name"])
                list_rv = int(token["rv"])
            except (ValueError, KeyError, TypeError) as exc:
                raise APIError(400, "BadRequest", f"invalid continue token: {exc}") from exc
            entries = entries[bisect.bisect_right([_entry_key(e) for e in entries], start) :]
        if limit and len(entries) > limit:
            last = _entry_key(entries[limit - 1])
            token_raw = json.dumps({"rv": list_rv, "ns": last[0], "name": last[1]}).encode()
            return ListResult(
                entries[:limit], list_rv, base64.urlsafe_b64encode(token_raw).decode(), len(entries) - limit
            )
        return ListResult(entries, list_rv)

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        *,
        since: str | None,
        send_initial: bool | None = None,
    ) -> Watcher:
        """Open a watch. `since` None or "0" starts with synthetic ADDED events for what exists now."""
        bucket = self.bucket(rtype)
        watcher = Watcher(bucket, namespace, labels, fields)
        initial = send_initial if send_initial is not None else since in (None, "", "0")
        if initial:
            watcher.pending.extend(("ADDED", e) for e in bucket.select(namespace, labels, fields))
        else:
            try:
                start = int(since or "0")
            except ValueError as exc:
                raise APIError(400, "BadRequest", f"invalid resourceVersion {since!r}") from exc
            if start < bucket.compacted_rv:
                watcher.error = APIError(
                    410, "Expired", f"too old resource version: {start} ({bucket.compacted_rv + 1})"
                )
                return watcher
            for event in bucket.events_since(start):
                watcher.offer(event)
        bucket.watchers.add(watcher)
        return watcher

    # ------------------------------------------------------------------------------------ writes

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _emit(self, bucket: Bucket, etype: str, entry: Entry, old: Entry | None, actor: str) -> Event:
        event = Event(self.rv, etype, bucket.rtype, entry, old, actor)
        bucket.record(event)
        if self.keep_history:
            self.history.append(event)
        for listener in list(self.listeners):
            listener(event)
        return event

    def _index_owners(
        self, bkey: tuple[str, str], key: ObjKey, old: JsonObj | None, new: JsonObj | None
    ) -> None:
        old_refs = {r.get("uid") for r in (old or {}).get("metadata", {}).get("ownerReferences") or []}
        new_refs = {r.get("uid") for r in (new or {}).get("metadata", {}).get("ownerReferences") or []}
        for uid in old_refs - new_refs:
            deps = self.dependents.get(uid)
            if deps is not None:
                deps.discard((bkey, key))
                if not deps:
                    del self.dependents[uid]
        for uid in new_refs - old_refs:
            if uid:
                self.dependents.setdefault(uid, set()).add((bkey, key))

    def create(self, rtype: ResourceType, namespace: str | None, body: Any, *, actor: str = "api") -> Entry:
        if not isinstance(body, dict):
            raise APIError(400, "BadRequest", "the request body must be a JSON object")
        obj = dict(body)
        self._check_kind(rtype, obj)
        meta = dict(obj.get("metadata") or {})
        ns = self._namespace_for(rtype, namespace, meta)
        bucket = self.bucket(rtype)
        name: str = meta.get("name") or ""
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise errors.invalid(
                    rtype.kind,
                    rtype.group,
                    "",
                    [("metadata.name", "Required value: name or generateName is required")],
                )
            for _ in range(100):
                name = prefix + "".join(random.choices(_NAME_CHARS, k=5))
                if (ns, name) not in bucket.objects:
                    break
        _check_name(rtype, name)
        _check_metadata(rtype, meta)
        if (ns, name) in bucket.objects:
            raise errors.already_exists(rtype.plural, name, rtype.group)
        if rtype.namespaced:
            self._check_namespace_open(ns)
        for fld in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "resourceVersion"):
            meta.pop(fld, None)
        meta["name"] = name
        if rtype.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        obj["metadata"] = meta
        obj = _defaults_on_create(rtype, obj)
        if self.validator is not None and rtype.is_custom:
            obj = self.validator(rtype, obj, None, strict=self.strict_fields)
        if self.dry_run:
            return Entry(obj)  # like kube-apiserver: defaulted and validated, no resourceVersion
        if rtype.plural == "customresourcedefinitions":
            obj = self._crd_established(obj)
        obj["metadata"] = {**obj["metadata"], "resourceVersion": str(self._next_rv())}
        entry = Entry(obj)
        bkey = (rtype.group, rtype.plural)
        bucket.put((ns, name), entry, None)
        self.by_uid[obj["metadata"]["uid"]] = (bkey, (ns, name))
        self._index_owners(bkey, (ns, name), None, obj)
        self._emit(bucket, "ADDED", entry, None, actor)
        return entry

    def _crd_established(self, obj: JsonObj) -> JsonObj:
        try:
            for rtype in types_from_crd(obj):
                self.register(rtype)
        except CRDError as exc:
            raise errors.invalid(
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                obj["metadata"].get("name", ""),
                [("spec", str(exc))],
            ) from exc
        ts = now_rfc3339()
        obj = dict(obj)
        obj["status"] = {
            "acceptedNames": obj["spec"]["names"],
            "storedVersions": [v["name"] for v in obj["spec"]["versions"] if v.get("storage")],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": ts,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": ts,
                },
            ],
        }
        return obj

    def _check_kind(self, rtype: ResourceType, obj: JsonObj) -> None:
        kind = obj.get("kind")
        api_version = obj.get("apiVersion")
        if kind is not None and kind != rtype.kind:
            raise APIError(
                400,
                "BadRequest",
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rtype.api_version}) or kind {kind!r} is not {rtype.kind!r}",
            )
        if api_version is not None and api_version != rtype.api_version:
            raise APIError(
                400,
                "BadRequest",
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rtype.api_version})",
            )
        obj["kind"] = rtype.kind
        obj["apiVersion"] = rtype.api_version

    def _namespace_for(self, rtype: ResourceType, namespace: str | None, meta: JsonObj) -> str:
        if not rtype.namespaced:
            return ""
        body_ns = meta.get("namespace")
        if namespace is None:
            if not body_ns:
                raise APIError(400, "BadRequest", "namespace is required for a namespaced resource")
            return str(body_ns)
        if body_ns and body_ns != namespace:
            raise APIError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        return namespace

    def _check_namespace_open(self, ns: str) -> None:
        entry = self.buckets[("", "namespaces")].objects.get(("", ns))
        if entry is None:
            raise errors.not_found("namespaces", ns)
        if entry.obj["metadata"].get("deletionTimestamp"):
            raise APIError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {ns} because it is being terminated",
                details={"name": ns, "kind": "namespaces"},
            )

    def update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        actor: str = "api",
    ) -> Entry:
        if not isinstance(body, dict):
            raise APIError(400, "BadRequest", "the request body must be a JSON object")
        old = self.get(rtype, namespace, name)
        new = dict(body)
        self._check_kind(rtype, new)
        return self._write(rtype, old, new, subresource, actor)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        actor: str = "api",
    ) -> Entry:
        old = self.get(rtype, namespace, name)
        if patch_type == "merge":
            if not isinstance(patch, dict):
                raise APIError(400, "BadRequest", "a merge patch must be a JSON object")
            new = merge_patch(old.obj, patch)
        elif patch_type == "json":
            new = json_patch(old.obj, patch)
        elif patch_type == "strategic":
            if rtype.is_custom:
                raise APIError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types "
                    "include: application/json-patch+json, application/merge-patch+json, "
                    "application/apply-patch+yaml",
                )
            if not isinstance(patch, dict):
                raise APIError(400, "BadRequest", "a strategic merge patch must be a JSON object")
            new = strategic_merge_patch(old.obj, patch, dict(rtype.merge_keys))
        else:
            raise APIError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type!r}")
        if not isinstance(new, dict):
            raise APIError(422, "Invalid", "the patch does not produce an object")
        return self._write(rtype, old, dict(new), subresource, actor)

    def mutate(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        fn: Callable[[JsonObj], JsonObj],
        *,
        subresource: str | None = None,
        actor: str = "internal",
    ) -> Entry:
        """Read-modify-write without a version check; fn must return a new dict, not mutate its input."""
        old = self.get(rtype, namespace, name)
        return self._write(rtype, old, dict(fn(old.obj)), subresource, actor)

    def _write(
        self, rtype: ResourceType, old_entry: Entry, new: JsonObj, subresource: str | None, actor: str
    ) -> Entry:
        old = old_entry.obj
        old_meta = old["metadata"]
        meta = dict(new.get("metadata") or {})
        name = old_meta["name"]
        if meta.get("name", name) != name:
            raise APIError(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})",
            )
        given_rv = meta.get("resourceVersion")
        if given_rv and given_rv != old_meta["resourceVersion"]:
            raise errors.conflict(rtype.plural, name, rtype.group)
        if meta.get("uid") and meta["uid"] != old_meta["uid"]:
            raise errors.conflict(rtype.plural, name, rtype.group)
        if subresource == "status":
            # The status endpoint ignores everything but status (pods may also change labels/annotations).
            result = dict(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            new_meta = dict(old_meta)
            if rtype.plural == "pods" and not rtype.group:
                for fld in ("labels", "annotations"):
                    if fld in meta:
                        new_meta[fld] = meta[fld]
                    else:
                        new_meta.pop(fld, None)
            result["metadata"] = new_meta
            new = result
        elif subresource is not None:
            raise APIError(405, "MethodNotAllowed", f"subresource {subresource!r} does not accept writes")
        else:
            if rtype.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            for fld in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ):
                if fld in old_meta:
                    meta[fld] = old_meta[fld]
                else:
                    meta.pop(fld, None)
            meta.pop("selfLink", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise errors.invalid(
                        rtype.kind,
                        rtype.group,
                        name,
                        [
                            (
                                "metadata.finalizers",
                                f"Forbidden: no new finalizers can be added if the object is being deleted, "
                                f"found new finalizers {sorted(added)!r}",
                            )
                        ],
                    )
            if not meta.get("finalizers"):
                meta.pop("finalizers", None)
            new["metadata"] = meta
            if meta.get("labels") != old_meta.get("labels") or meta.get("ownerReferences") != old_meta.get(
                "ownerReferences"
            ):
                _check_metadata(rtype, meta)
            if rtype.plural == "pods" and not rtype.group:
                _check_pod_update(old, new)
            if _spec_part(new, rtype) != _spec_part(old, rtype):
                meta["generation"] = int(old_meta.get("generation", 0)) + 1
        new["kind"] = rtype.kind
        new["apiVersion"] = old.get("apiVersion", rtype.api_version)
        if self.validator is not None and rtype.is_custom:
            new = self.validator(rtype, new, old, strict=self.strict_fields)
        new["metadata"] = dict(new["metadata"])
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        bucket = self.bucket(rtype)
        key = (old_meta.get("namespace", ""), name)
        if new == old:
            return old_entry  # a no-op write: no new resourceVersion, no watch event
        if self.dry_run:
            return Entry(new)
        if rtype.plural == "customresourcedefinitions" and new.get("spec") != old.get("spec"):
            new = self._crd_established(new)
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        entry = Entry(new)
        bucket.put(key, entry, old_entry)
        self._index_owners((rtype.group, rtype.plural), key, old, new)
        self._emit(bucket, "MODIFIED", entry, old_entry, actor)
        if new["metadata"].get("deletionTimestamp") and self._removable(rtype, new):
            self._remove(bucket, key, actor)
        return entry

    def _removable(self, rtype: ResourceType, obj: JsonObj) -> bool:
        meta = obj["metadata"]
        if meta.get("finalizers"):
            return False
        if rtype.plural == "pods" and not rtype.group and self.graceful_pod is not None:
            return meta.get("deletionGracePeriodSeconds", 0) == 0 or not self.graceful_pod(obj)
        return True

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        options: JsonObj | None = None,
        *,
        actor: str = "api",
    ) -> Entry:
        options = options or {}
        entry = self.get(rtype, namespace, name)
        meta = entry.obj["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise APIError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise APIError(
                409,
                "Conflict",
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
            )
        bucket = self.bucket(rtype)
        key = (meta.get("namespace", ""), meta["name"])
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is True:
            policy = "Orphan"
        if policy == "Orphan":
            self._orphan_dependents(meta["uid"], actor)
        grace = options.get("gracePeriodSeconds")
        is_pod = rtype.plural == "pods" and not rtype.group
        graceful = is_pod and self.graceful_pod is not None and self.graceful_pod(entry.obj) and grace != 0
        finalizers = list(meta.get("finalizers") or [])
        if (
            policy == "Foreground"
            and self.dependents.get(meta["uid"])
            and "foregroundDeletion" not in finalizers
        ):
            finalizers.append("foregroundDeletion")
        if meta.get("deletionTimestamp"):
            if grace == 0 and is_pod and not finalizers:
                return self._remove(bucket, key, actor)
            return entry
        if finalizers or graceful:
            if graceful:
                grace = (
                    grace
                    if grace is not None
                    else entry.obj.get("spec", {}).get("terminationGracePeriodSeconds", 30)
                )
            new_meta = {
                **meta,
                "deletionTimestamp": now_rfc3339(),
                "deletionGracePeriodSeconds": int(grace or 0),
            }
            if finalizers:
                new_meta["finalizers"] = finalizers
            new = {**entry.obj, "metadata": new_meta}
            if rtype.plural == "namespaces" and not rtype.group:
                new["status"] = {**new.get("status", {}), "phase": "Terminating"}
            new_meta["resourceVersion"] = str(self._next_rv())
            new_entry = Entry(new)
            bucket.put(key, new_entry, entry)
            self._emit(bucket, "MODIFIED", new_entry, entry, actor)
            if "foregroundDeletion" in finalizers:
                self._collect_dependents(meta["uid"], actor, force=True)
                self._finish_foreground(meta["uid"])
            if rtype.plural == "namespaces" and not rtype.group:
                self._drain_namespace(meta["name"], actor)
            return new_entry
        if rtype.plural == "namespaces" and not rtype.group:
            # Namespaces always go through Terminating while their content is deleted.
            new = {
                **entry.obj,
                "metadata": {**meta, "deletionTimestamp": now_rfc3339()},
                "status": {**entry.obj.get("status", {}), "phase": "Terminating"},
            }
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            new_entry = Entry(new)
            bucket.put(key, new_entry, entry)
            self._emit(bucket, "MODIFIED", new_entry, entry, actor)
            self._drain_namespace(meta["name"], actor)
            return self.buckets[("", "namespaces")].objects.get(key, new_entry)
        return self._remove(bucket, key, actor)

    def _drain_namespace(self, ns: str, actor: str) -> None:
        for bucket in list(self.buckets.values()):
            if not bucket.rtype.namespaced:
                continue
            for key in list(bucket.by_namespace.get(ns, {})):
                if key in bucket.objects and not bucket.objects[key].obj["metadata"].get("deletionTimestamp"):
                    self.delete(bucket.rtype, ns, key[1], actor="namespace-controller")
        self._maybe_finish_namespace(ns)

    def _maybe_finish_namespace(self, ns: str) -> None:
        nsb = self.buckets[("", "namespaces")]
        entry = nsb.objects.get(("", ns))
        if entry is None or not entry.obj["metadata"].get("deletionTimestamp"):
            return
        if entry.obj["metadata"].get("finalizers"):
            return
        if any(b.rtype.namespaced and b.by_namespace.get(ns) for b in self.buckets.values()):
            return
        self._remove(nsb, ("", ns), "namespace-controller")

    def _remove(self, bucket: Bucket, key: ObjKey, actor: str) -> Entry:
        entry = bucket.remove(key)
        final = {**entry.obj, "metadata": {**entry.obj["metadata"], "resourceVersion": str(self._next_rv())}}
        gone = Entry(final)
        uid = final["metadata"]["uid"]
        self.by_uid.pop(uid, None)
        bkey = (bucket.rtype.group, bucket.rtype.plural)
        self._index_owners(bkey, key, entry.obj, None)
        self._emit(bucket, "DELETED", gone, entry, actor)
        if bucket.rtype.plural == "customresourcedefinitions" and not bucket.rtype.namespaced:
            self.unregister_crd(final["metadata"]["name"])
        self._later(self._collect_dependents, uid, "garbage-collector")
        for ref in final["metadata"].get("ownerReferences") or []:
            self._finish_foreground(ref.get("uid"))
        if key[0]:
            self._maybe_finish_namespace(key[0])
        return gone

    def _later(self, fn: Callable[..., None], *args: Any) -> None:
        """Run fn soon after the current write, like the garbage collector's background cascade (in
        Kubernetes the owner is gone before its dependents); at once when no event loop runs."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            fn(*args)
            return

        def run() -> None:
            with contextlib.suppress(APIError):  # something else removed or changed it meanwhile
                fn(*args)

        loop.call_soon(run)

    def _collect_dependents(self, owner_uid: str, actor: str, *, force: bool = False) -> None:
        """Background cascade: dependents whose owners are all gone are deleted."""
        for bkey, key in sorted(self.dependents.get(owner_uid, set())):
            bucket = self.buckets.get(bkey)
            entry = bucket.objects.get(key) if bucket is not None else None
            if bucket is None or entry is None or entry.obj["metadata"].get("deletionTimestamp"):
                continue
            owners = [r.get("uid") for r in entry.obj["metadata"].get("ownerReferences") or []]
            alive = [u for u in owners if u in self.by_uid and not (force and u == owner_uid)]
            if not alive:
                self.delete(bucket.rtype, key[0] or None, key[1], actor=actor)

    def _finish_foreground(self, owner_uid: str | None) -> None:
        if not owner_uid or owner_uid not in self.by_uid:
            return
        bkey, key = self.by_uid[owner_uid]
        bucket = self.buckets[bkey]
        entry = bucket.objects[key]
        fins = entry.obj["metadata"].get("finalizers") or []
        if "foregroundDeletion" not in fins:
            return
        if any(
            self.buckets[b].objects.get(k) is not None
            for b, k in self.dependents.get(owner_uid, set())
            if b in self.buckets
        ):
            return
        self.mutate(
            bucket.rtype,
            key[0] or None,
            key[1],
            lambda o: {
                **o,
                "metadata": {**o["metadata"], "finalizers": [f for f in fins if f != "foregroundDeletion"]},
            },
            actor="garbage-collector",
        )

    def _orphan_dependents(self, owner_uid: str, actor: str) -> None:
        for bkey, key in sorted(self.dependents.get(owner_uid, set())):
            bucket = self.buckets[bkey]
            self.mutate(
                bucket.rtype,
                key[0] or None,
                key[1],
                lambda o: {
                    **o,
                    "metadata": {
                        **o["metadata"],
                        "ownerReferences": [
                            r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid
                        ],
                    },
                },
                actor="garbage-collector",
            )

    def delete_collection(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        options: JsonObj | None = None,
        *,
        actor: str = "api",
    ) -> list[Entry]:
        result = self.list_entries(rtype, namespace, labels, fields)
        out = []
        for entry in result.items:
            meta = entry.obj["metadata"]
            out.append(self.delete(rtype, meta.get("namespace"), meta["name"], options, actor=actor))
        return out

    # ------------------------------------------------------------------------------------ helpers

    def remove_now(self, rtype: ResourceType, namespace: str | None, name: str, *, actor: str) -> None:
        """Finish a deletion (the kubelet after a pod's containers stopped)."""
        bucket = self.bucket(rtype)
        key = (namespace or "", name)
        entry = bucket.objects.get(key)
        if entry is not None and not entry.obj["metadata"].get("finalizers"):
            self._remove(bucket, key, actor)

    def finish_graceful_deletion(
        self, rtype: ResourceType, namespace: str | None, name: str, *, actor: str
    ) -> None:
        """The kubelet's final `delete` with grace 0: remove now, or once the finalizers are gone."""
        bucket = self.bucket(rtype)
        key = (namespace or "", name)
        entry = bucket.objects.get(key)
        if entry is None or not entry.obj["metadata"].get("deletionTimestamp"):
            return
        if entry.obj["metadata"].get("finalizers"):
            if entry.obj["metadata"].get("deletionGracePeriodSeconds") != 0:
                new = {
                    **entry.obj,
                    "metadata": {
                        **entry.obj["metadata"],
                        "deletionGracePeriodSeconds": 0,
                        "resourceVersion": str(self._next_rv()),
                    },
                }
                new_entry = Entry(new)
                bucket.put(key, new_entry, entry)
                self._emit(bucket, "MODIFIED", new_entry, entry, actor)
            return
        self._remove(bucket, key, actor)

    def writes(self, *, since_rv: int = 0, actor: str | None = None) -> Iterator[Event]:
        """Recorded writes after a resourceVersion, optionally only one actor's."""
        idx = bisect.bisect_right([e.rv for e in self.history], since_rv)
        for event in self.history[idx:]:
            if actor is None or event.actor == actor:
                yield event


def _entry_key(e: Entry) -> ObjKey:
    meta = e.obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return "prefix part must be a lowercase RFC 1123 subdomain"
    if not name or len(name) > 63:
        return "name part must be no more than 63 bytes" if name else "name part must be non-empty"
    if not _QUALIFIED_NAME.fullmatch(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character"
        )
    return None


def _check_metadata(rtype: ResourceType, meta: JsonObj) -> None:
    """Label keys and values and owner references, as apimachinery's ObjectMeta validation."""
    problems: list[tuple[str, str]] = []
    for key, value in (meta.get("labels") or {}).items():
        key_problem = _label_key_problem(str(key))
        if key_problem:
            problems.append(("metadata.labels", f"Invalid value: {key!r}: {key_problem}"))
        if not isinstance(value, str):
            continue
        if len(value) > 63:
            problems.append(("metadata.labels", f"Invalid value: {value!r}: must be no more than 63 bytes"))
        elif not _LABEL_VALUE.fullmatch(value):
            problems.append(
                (
                    "metadata.labels",
                    f"Invalid value: {value!r}: a valid label must be an empty string or consist of "
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                )
            )
    for key in meta.get("annotations") or {}:
        key_problem = _label_key_problem(str(key))
        if key_problem:
            problems.append(("metadata.annotations", f"Invalid value: {key!r}: {key_problem}"))
    refs = meta.get("ownerReferences") or []
    if len([r for r in refs if isinstance(r, dict) and r.get("controller")]) > 1:
        problems.append(
            ("metadata.ownerReferences", "Invalid value: only one reference can have Controller set to true")
        )
    if problems:
        raise errors.invalid(rtype.kind, rtype.group, str(meta.get("name", "")), problems)


def _spec_part(obj: JsonObj, rtype: ResourceType) -> JsonObj:
    skip = (
        ("metadata", "status", "kind", "apiVersion")
        if rtype.has_status
        else ("metadata", "kind", "apiVersion")
    )
    return {k: v for k, v in obj.items() if k not in skip}


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def _check_name(rtype: ResourceType, name: Any) -> None:
    # As apimachinery's IsDNS1123Subdomain (IsDNS1123Label, 63 bytes, for namespaces): fullmatch,
    # so "a..b" or a trailing newline are refused like in Go.
    is_label = rtype.plural == "namespaces" and not rtype.group
    if (
        not isinstance(name, str)
        or not name
        or len(name) > (63 if is_label else 253)
        or not (_DNS_LABEL if is_label else _DNS_SUBDOMAIN).fullmatch(name)
    ):
        raise errors.invalid(
            rtype.kind,
            rtype.group,
            str(name),
            [
                (
                    "metadata.name",
                    f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower "
                    "case alphanumeric characters, '-' or '.', and must start and end with an "
                    "alphanumeric character",
                )
            ],
        )


def _defaults_on_create(rtype: ResourceType, obj: JsonObj) -> JsonObj:
    """What the real server's create strategies reset or default."""
    if rtype.is_custom and rtype.has_status:
        obj.pop("status", None)  # create cannot set status when the status subresource is on
    if rtype.group:
        return obj
    if rtype.plural == "pods":
        spec = dict(obj.get("spec") or {})
        if not spec.get("containers"):
            raise errors.invalid("Pod", "", obj["metadata"]["name"], [("spec.containers", "Required value")])
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("priority", 0)
        containers = []
        for c in spec["containers"]:
            c = dict(c)
            if not c.get("name") or not c.get("image"):
                raise errors.invalid(
                    "Pod",
                    "",
                    obj["metadata"]["name"],
                    [
                        (
                            "spec.containers[].name" if not c.get("name") else "spec.containers[].image",
                            "Required value",
                        )
                    ],
                )
            c.setdefault(
                "imagePullPolicy", "Always" if str(c["image"]).endswith(":latest") else "IfNotPresent"
            )
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            containers.append(c)
        spec["containers"] = containers
        obj["spec"] = spec
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(containers)}
    elif rtype.plural == "namespaces":
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
        labels = dict(obj["metadata"].get("labels") or {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        obj["metadata"]["labels"] = labels
    return obj


def _qos_class(containers: list[JsonObj]) -> str:
    reqs = [(c.get("resources") or {}) for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in reqs):
        return "BestEffort"
    for r in reqs:
        limits = r.get("limits") or {}
        requests = r.get("requests") or limits
        if not limits.get("cpu") or not limits.get("memory") or requests != limits:
            return "Burstable"
    return "Guaranteed"


_POD_MUTABLE_SPEC = {"activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"}


def _check_pod_update(old: JsonObj, new: JsonObj) -> None:
    """Pod specs are immutable except container images and a few fields, like the real validation."""
    o, n = old.get("spec") or {}, new.get("spec") or {}
    for part in ("containers", "initContainers"):
        oc, nc = o.get(part) or [], n.get(part) or []
        if len(oc) != len(nc) or any(
            {**a, "image": None} != {**b, "image": None} for a, b in zip(oc, nc, strict=False)
        ):
            break
    else:
        rest_o = {k: v for k, v in o.items() if k not in _POD_MUTABLE_SPEC | {"containers", "initContainers"}}
        rest_n = {k: v for k, v in n.items() if k not in _POD_MUTABLE_SPEC | {"containers", "initContainers"}}
        if rest_o == rest_n:
            return
    raise errors.invalid(
        "Pod",
        "",
        old["metadata"]["name"],
        [
            (
                "spec",
                "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
                "(only additions to existing tolerations), `spec.terminationGracePeriodSeconds`",
            )
        ],
    )

"""Request bodies in Kubernetes' protobuf encoding, for the few built-in kinds kubectl creates that way.

client-go's typed clients (``kubectl create namespace``, ``kubectl create configmap``) send
``application/vnd.kubernetes.protobuf`` and, unlike with CBOR, never fall back to JSON on 415.
The emulator stores JSON, so this decodes just enough of the wire format to turn those bodies into
the JSON objects a real API server would have stored: the ``k8s\\x00`` envelope
(``runtime.Unknown``), ``ObjectMeta``'s user-settable fields, and the kinds' own fields. Field
numbers are those of ``k8s.io/api/core/v1/generated.proto`` and
``k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gpufleet_devcluster.errors import APIError

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

JsonObj = dict[str, Any]
Field = tuple[int, int, bytes | int]  # (number, wire type, value)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(data: bytes) -> Iterator[Field]:
    """The (number, wire type, value) triples of one protobuf message, in order."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated length-delimited field")
            yield number, wire, data[pos : pos + size]
            pos += size
        elif wire == 1:
            yield number, wire, data[pos : pos + 8]
            pos += 8
        elif wire == 5:
            yield number, wire, data[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _text(value: bytes | int) -> str:
    if not isinstance(value, bytes):
        raise ValueError("expected a string field")
    return value.decode("utf-8")


def _map_entry(value: bytes | int) -> tuple[str, str]:
    if not isinstance(value, bytes):
        raise ValueError("expected a map entry")
    key = val = ""
    for number, _, v in fields(value):
        if number == 1:
            key = _text(v)
        elif number == 2:
            val = _text(v)
    return key, val


def _object_meta(data: bytes) -> JsonObj:
    """ObjectMeta: name 1, generateName 2, namespace 3, labels 11, annotations 12, finalizers 14."""
    meta: JsonObj = {}
    for number, _, value in fields(data):
        if number == 1:
            meta["name"] = _text(value)
        elif number == 2:
            meta["generateName"] = _text(value)
        elif number == 3:
            meta["namespace"] = _text(value)
        elif number == 11:
            k, v = _map_entry(value)
            meta.setdefault("labels", {})[k] = v
        elif number == 12:
            k, v = _map_entry(value)
            meta.setdefault("annotations", {})[k] = v
        elif number == 14:
            meta.setdefault("finalizers", []).append(_text(value))
    return meta


def _namespace(data: bytes) -> JsonObj:
    """v1.Namespace: metadata 1, spec 2 (finalizers 1)."""
    obj: JsonObj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {}}
    for number, _, value in fields(data):
        if number == 1 and isinstance(value, bytes):
            obj["metadata"] = _object_meta(value)
        elif number == 2 and isinstance(value, bytes):
            finalizers = [_text(v) for n, _, v in fields(value) if n == 1]
            if finalizers:
                obj["spec"] = {"finalizers": finalizers}
    return obj


def _configmap(data: bytes) -> JsonObj:
    """v1.ConfigMap: metadata 1, data 2 (map), immutable 4."""
    obj: JsonObj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}
    for number, _, value in fields(data):
        if number == 1 and isinstance(value, bytes):
            obj["metadata"] = _object_meta(value)
        elif number == 2:
            k, v = _map_entry(value)
            obj.setdefault("data", {})[k] = v
        elif number == 4 and isinstance(value, int):
            obj["immutable"] = bool(value)
    return obj


DECODERS = {("v1", "Namespace"): _namespace, ("v1", "ConfigMap"): _configmap}


def decode(body: bytes) -> JsonObj:
    """The JSON object a protobuf request body encodes; 415 for kinds the emulator cannot read."""
    if not body.startswith(MAGIC):
        raise APIError(400, "BadRequest", "protobuf body without the k8s\\x00 envelope")
    api_version = kind = ""
    raw = b""
    try:
        for number, _, value in fields(body[len(MAGIC) :]):
            if number == 1 and isinstance(value, bytes):  # TypeMeta
                for n, _, v in fields(value):
                    if n == 1:
                        api_version = _text(v)
                    elif n == 2:
                        kind = _text(v)
            elif number == 2 and isinstance(value, bytes):
                raw = value
        decoder = DECODERS.get((api_version, kind))
        if decoder is None:
            raise APIError(
                415,
                "UnsupportedMediaType",
                f"the devcluster emulator reads protobuf bodies only for "
                f"{', '.join(k for _, k in DECODERS)}, not {api_version}/{kind}; send application/json",
            )
        return decoder(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, "BadRequest", f"invalid protobuf body: {exc}") from exc

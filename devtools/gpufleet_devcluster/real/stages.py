"""kwok Stages for gpufleet's simulated GPU nodes: a kubelet's pod lifecycle, behaviours included.

kwok's default stages mark every readiness gate True themselves; a real kubelet never writes a
readiness gate (the controller owning it does) and makes a pod Ready only when its containers are
ready *and* every gate is True. These stages do the same, so `gpufleet.io/engine-ready` is left to
the operator. Behaviours (the emulator's `Behaviour` kinds) are chosen per pod, first by the label
`devcluster.gpufleet.io/behaviour`, then by the first container's image through an image map, and
default to `ok`:

- `ok`, `slow_start` (starts after `slow_start_ms`), `never_ready` (runs, never ready),
- `crash_loop` / `oom` (exits after `crash_after_ms`, `restartCount` grows, `CrashLoopBackOff`
  with a doubling back-off; `oom` is `OOMKilled`, exit 137),
- `image_pull_error` (stays Pending, `ImagePullBackOff`).

Every selector is exclusive of the others for a given pod state, so kwok never picks among
several (it would pick at random, by weight). The stage that fixes a pod's `Ready` condition after a
gate or a container changed runs first: every other running-pod stage requires `Ready` to agree
with the containers and gates already.
"""

# ruff: noqa: E501  (kwok templates are long lines of Go template YAML)
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpufleet_devcluster.kubelet import BEHAVIOUR_LABEL

KINDS = ("ok", "slow_start", "never_ready", "crash_loop", "oom", "image_pull_error")

Obj = dict[str, Any]


@dataclass(frozen=True)
class Timings:
    """Stage delays in milliseconds (the emulator's `KubeletConfig` in kwok's terms)."""

    start_ms: int = 100
    ready_ms: int = 100
    slow_start_ms: int = 3000
    crash_after_ms: int = 100
    backoff_ms: int = 200
    max_backoff_ms: int = 5000
    delete_ms: int = 100


def behaviour_expr(images: dict[str, str]) -> str:
    """jq: the pod's behaviour kind (label, else image map, else ok)."""
    return (
        f"({json.dumps(images, sort_keys=True)}) as $m | "
        f'(.metadata.labels["{BEHAVIOUR_LABEL}"] // $m[(.spec.containers[0].image // "")] // "ok")'
    )


#: jq: true when the pod's Ready condition disagrees with "every container ready and every gate True".
READY_MISMATCH = (
    "((.status.conditions // []) as $c"
    ' | [$c[] | select(.status == "True") | .type] as $t'
    " | ((.status.containerStatuses // []) | (length > 0) and all(.ready == true)) as $cr"
    " | ($cr and (([(.spec.readinessGates // [])[] | .conditionType] - $t) | length == 0)) as $want"
    ' | ([$c[] | select(.type == "Ready") | .status == "True"] | any) != $want)'
)

WAITING_REASON = '[(.status.containerStatuses // [])[] | .state.waiting.reason // ""] | first // ""'
ALL_RUNNING_NOT_READY = (
    "(.status.containerStatuses // []) | (length > 0) and all(.state.running != null and .ready != true)"
)
ALL_RUNNING = "(.status.containerStatuses // []) | (length > 0) and all(.state.running != null)"


def _expr(key: str, *values: str) -> Obj:
    return {"key": key, "operator": "In", "values": list(values)}


def _not_deleting() -> Obj:
    return {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}


def _stage(
    name: str,
    exprs: list[Obj],
    template: str,
    delay_ms: int | None = None,
    delay_from: str | None = None,
    event: Obj | None = None,
    delete: bool = False,
) -> Obj:
    spec: Obj = {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {"matchExpressions": exprs},
        "next": {},
    }
    if delay_ms is not None or delay_from is not None:
        delay: Obj = {"durationMilliseconds": delay_ms or 0}
        if delay_from is not None:
            delay["durationFrom"] = {"expressionFrom": delay_from}
        spec["delay"] = delay
    if template:
        spec["next"]["statusTemplate"] = template
    if event:
        spec["next"]["event"] = event
    if delete:
        spec["next"]["delete"] = True
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}, "spec": spec}


_COND = """
- type: {type}
  status: "{status}"
  reason: {reason}
  message: {message}
  lastProbeTime: null
  lastTransitionTime: {{{{ $now | Quote }}}}"""


def _cond(type_: str, status: str, reason: str = '""', message: str = '""') -> str:
    return _COND.format(type=type_, status=status, reason=reason, message=message)


_NOT_READY_MSG = "'containers with unready status: [{{ range .spec.containers }}{{ .name }} {{ end }}]'"

CREATE = (
    "{{ $now := Now }}\nconditions:"
    + _cond("PodReadyToStartContainers", "True")
    + _cond("Initialized", "True")
    + _cond("PodScheduled", "True")
    + _cond("ContainersReady", "False", "ContainersNotReady", _NOT_READY_MSG)
    + _cond("Ready", "False", "ContainersNotReady", _NOT_READY_MSG)
    + """
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  imageID: ""
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    waiting:
      reason: ContainerCreating
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
hostIPs:
- ip: {{ NodeIPWith .spec.nodeName | Quote }}
{{ $ip := PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
podIP: {{ $ip | Quote }}
podIPs:
- ip: {{ $ip | Quote }}
phase: Pending
startTime: {{ $now | Quote }}
"""
)

IMAGE_PULL = """{{ $now := Now }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  imageID: ""
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    waiting:
      reason: ImagePullBackOff
      message: {{ printf "Back-off pulling image %q" .image | Quote }}
{{ end }}
"""

START = """{{ $now := Now }}
{{ $root := . }}
containerStatuses:
{{ range $i, $c := .spec.containers }}
{{ $old := index $root.status.containerStatuses $i }}
- image: {{ $c.image | Quote }}
  imageID: {{ printf "docker.io/%s" $c.image | Quote }}
  containerID: {{ printf "containerd://%s-%v" $root.metadata.uid (or $old.restartCount 0) | Quote }}
  name: {{ $c.name | Quote }}
  ready: false
  restartCount: {{ or $old.restartCount 0 }}
  started: true
  {{ with $old.lastState }}
  lastState:
{{ YAML . 2 }}
  {{ end }}
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Running
"""

CONTAINERS_READY = (
    "{{ $now := Now }}\n{{ $root := . }}\nconditions:"
    + _cond("ContainersReady", "True")
    + """
containerStatuses:
{{ range $i, $old := .status.containerStatuses }}
- image: {{ $old.image | Quote }}
  imageID: {{ $old.imageID | Quote }}
  containerID: {{ $old.containerID | Quote }}
  name: {{ $old.name | Quote }}
  ready: true
  restartCount: {{ or $old.restartCount 0 }}
  started: true
  {{ with $old.lastState }}
  lastState:
{{ YAML . 2 }}
  {{ end }}
  state:
{{ YAML $old.state 2 }}
{{ end }}
"""
)

# Flip Ready: this stage only runs when Ready disagrees with containers + gates (READY_MISMATCH).
READY_SYNC = """{{ $now := Now }}
{{ $ready := "True" }}
{{ range .status.conditions }}{{ if and (eq .type "Ready") (eq .status "True") }}{{ $ready = "False" }}{{ end }}{{ end }}
{{ $cready := true }}
{{ range .status.containerStatuses }}{{ if not .ready }}{{ $cready = false }}{{ end }}{{ end }}
conditions:
- type: Ready
  status: {{ $ready | Quote }}
  lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  {{ if eq $ready "False" }}
  {{ if $cready }}
  reason: ReadinessGatesNotReady
  message: 'the status of pod readiness gate is not "True"'
  {{ else }}
  reason: ContainersNotReady
  message: 'containers with unready status: [{{ range .spec.containers }}{{ .name }} {{ end }}]'
  {{ end }}
  {{ else }}
  reason: ""
  message: ""
  {{ end }}
"""


def _crash_template(reason: str, exit_code: int) -> str:
    return (
        "{{ $now := Now }}\n{{ $root := . }}\nconditions:"
        + _cond("ContainersReady", "False", "ContainersNotReady", _NOT_READY_MSG)
        + _cond("Ready", "False", "ContainersNotReady", _NOT_READY_MSG)
        + f"""
containerStatuses:
{{{{ range $i, $old := .status.containerStatuses }}}}
- image: {{{{ $old.image | Quote }}}}
  imageID: {{{{ $old.imageID | Quote }}}}
  containerID: {{{{ $old.containerID | Quote }}}}
  name: {{{{ $old.name | Quote }}}}
  ready: false
  restartCount: {{{{ add1 (or $old.restartCount 0) }}}}
  started: false
  lastState:
    terminated:
      exitCode: {exit_code}
      reason: {reason}
      startedAt: {{{{ $old.state.running.startedAt | Quote }}}}
      finishedAt: {{{{ $now | Quote }}}}
      containerID: {{{{ $old.containerID | Quote }}}}
  state:
    waiting:
      reason: CrashLoopBackOff
      message: {{{{ printf "back-off restarting failed container %s in pod %s" $old.name $root.metadata.name | Quote }}}}
{{{{ end }}}}
"""
    )


def pod_stages(images: dict[str, str], t: Timings) -> list[Obj]:
    """The Stage documents for the given image → behaviour map and timings."""
    b = behaviour_expr(images)
    live = [_not_deleting()]
    running = [*live, _expr(".status.phase", "Running"), _expr(READY_MISMATCH, "false")]
    pending = [
        *live,
        _expr(".status.phase", "Pending"),
        {"key": ".status.podIP", "operator": "Exists"},
        _expr(WAITING_REASON, "ContainerCreating"),
    ]
    backoff = (
        f"((.status.containerStatuses // [])[0].restartCount // 1) as $n"
        f' | ([{t.backoff_ms} * pow(2; $n - 1), {t.max_backoff_ms}] | min | floor | tostring) + "ms"'
    )
    return [
        _stage(
            "gpufleet-pod-create", [*live, {"key": ".status.podIP", "operator": "DoesNotExist"}], CREATE, 0
        ),
        _stage(
            "gpufleet-pod-image-pull-error",
            [*pending, _expr(b, "image_pull_error")],
            IMAGE_PULL,
            t.start_ms,
            event={"type": "Warning", "reason": "Failed", "message": "Error: ImagePullBackOff"},
        ),
        _stage(
            "gpufleet-pod-start",
            [*pending, _expr(b, "ok", "never_ready", "crash_loop", "oom")],
            START,
            t.start_ms,
            event={"type": "Normal", "reason": "Started", "message": "Started container"},
        ),
        _stage(
            "gpufleet-pod-start-slow",
            [*pending, _expr(b, "slow_start")],
            START,
            t.slow_start_ms,
            event={"type": "Normal", "reason": "Started", "message": "Started container"},
        ),
        _stage(
            "gpufleet-pod-containers-ready",
            [*running, _expr(ALL_RUNNING_NOT_READY, "true"), _expr(b, "ok", "slow_start")],
            CONTAINERS_READY,
            t.ready_ms,
        ),
        _stage(
            "gpufleet-pod-ready-sync",
            [*live, _expr(".status.phase", "Running"), _expr(READY_MISMATCH, "true")],
            READY_SYNC,
            0,
        ),
        _stage(
            "gpufleet-pod-crash",
            [*running, _expr(ALL_RUNNING, "true"), _expr(b, "crash_loop")],
            _crash_template("Error", 1),
            t.crash_after_ms,
            event={"type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container"},
        ),
        _stage(
            "gpufleet-pod-oom",
            [*running, _expr(ALL_RUNNING, "true"), _expr(b, "oom")],
            _crash_template("OOMKilled", 137),
            t.crash_after_ms,
            event={"type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container"},
        ),
        _stage(
            "gpufleet-pod-restart",
            [*running, _expr(WAITING_REASON, "CrashLoopBackOff"), _expr(b, "crash_loop", "oom")],
            START,
            t.backoff_ms,
            delay_from=backoff,
        ),
        _stage(
            "gpufleet-pod-delete",
            [
                {"key": ".metadata.deletionTimestamp", "operator": "Exists"},
                {"key": ".metadata.finalizers", "operator": "DoesNotExist"},
            ],
            "",
            t.delete_ms,
            delete=True,
        ),
    ]


NODE_INITIALIZE = """{{ $now := Now }}
conditions:
- type: Ready
  status: "True"
  reason: KubeletReady
  message: kubelet is posting ready status
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
phase: Running
"""


def node_stages() -> list[Obj]:
    """A node kwok manages is Ready (its lease is renewed by kwok's node-lease controller)."""
    return [
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Stage",
            "metadata": {"name": "gpufleet-node-initialize"},
            "spec": {
                "resourceRef": {"apiGroup": "v1", "kind": "Node"},
                "selector": {
                    "matchExpressions": [
                        {
                            "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
                            "operator": "NotIn",
                            "values": ["True"],
                        }
                    ]
                },
                "next": {"statusTemplate": NODE_INITIALIZE},
            },
        }
    ]


def all_stages(images: dict[str, str], t: Timings) -> list[Obj]:
    return [*node_stages(), *pod_stages(images, t)]

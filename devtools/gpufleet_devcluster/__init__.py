"""A Kubernetes API emulator with a simulated kubelet and node agents, for tests, benchmarks and the demo.

See docs/devcluster.md. The real `kubernetes` client and kopf talk to it unmodified through the
kubeconfig it writes.
"""

from gpufleet_devcluster.agents import PROFILE_ANNOTATION, Agents
from gpufleet_devcluster.cluster import DevCluster, NodeSpec, ThreadedCluster, env_with_kubeconfig
from gpufleet_devcluster.errors import APIError
from gpufleet_devcluster.kubelet import Behaviour, Kubelet, KubeletConfig
from gpufleet_devcluster.process import ProcessCluster
from gpufleet_devcluster.server import RequestLog
from gpufleet_devcluster.store import Event, Store

__all__ = [
    "PROFILE_ANNOTATION",
    "APIError",
    "Agents",
    "Behaviour",
    "DevCluster",
    "Event",
    "Kubelet",
    "KubeletConfig",
    "NodeSpec",
    "ProcessCluster",
    "RequestLog",
    "Store",
    "ThreadedCluster",
    "env_with_kubeconfig",
]

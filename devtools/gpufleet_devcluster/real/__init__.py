"""The real control plane backend: kube-apiserver, etcd, controller-manager, scheduler and kwok.

Binaries are built from the Go module proxy by `gpufleet_devcluster.real.build` (cached outside
the repository, keyed on the wrapper modules in devtools/controlplane/); `RealCluster` starts them
on loopback with simulated GPU nodes. Importing this package starts and builds nothing.
"""

from __future__ import annotations

from gpufleet_devcluster.kubelet import BEHAVIOUR_LABEL
from gpufleet_devcluster.real.build import bin_dir, find_go, is_built
from gpufleet_devcluster.real.stages import Timings

__all__ = ["BEHAVIOUR_LABEL", "Timings", "bin_dir", "find_go", "is_built"]

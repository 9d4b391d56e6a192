"""gpufleet: a Kubernetes operator for a fleet of GPU inference machines."""

__version__ = "0.1.0"

API_GROUP = "gpufleet.io"
API_VERSION = "v1alpha1"

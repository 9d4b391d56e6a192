"""gpufleet.api.v1alpha1."""

"""gpufleet.devcluster."""

"""gpufleet.economics."""

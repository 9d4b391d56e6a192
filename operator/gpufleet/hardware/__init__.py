"""gpufleet.hardware."""

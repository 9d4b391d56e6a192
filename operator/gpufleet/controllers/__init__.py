"""gpufleet.controllers."""

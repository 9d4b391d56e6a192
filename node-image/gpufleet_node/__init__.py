"""The gpufleet node agent: detects the GPU, selects and supervises the inference engine."""

"""`gpufleet demo`: a simulated fleet, run by the real operator against the API emulator."""

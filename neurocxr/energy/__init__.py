"""Energy: operation counts, device profiles, estimates and measurements."""

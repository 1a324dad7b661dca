"""Loihi fixed-point emulator, Lava runner and run results (installed as neurocxr.hardware_sims)."""

"""Exporters: NIR graphs, Loihi 2 netx programs, ONNX (installed as neurocxr.exporters)."""

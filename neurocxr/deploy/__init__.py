"""Deployment stage: the `Deployment` object (program, graph, runs, operating point,
energy), checkpoint export (`export`) and NIR-file export (`nir_file`).
"""

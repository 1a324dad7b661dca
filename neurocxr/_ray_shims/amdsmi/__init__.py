"""Stand-in that hides a broken `amdsmi` from Ray (see neurocxr.sweep.ray_runner._amdsmi_hidden).

Ray 2.60 probes AMD GPUs by importing `amdsmi` when it starts, catching only ImportError; an
amdsmi wheel installed without its native library raises KeyError at import instead, and then
`import ray` itself fails. Raising ImportError here lets Ray conclude "no AMD GPU" and go on.
"""

raise ImportError("amdsmi hidden by neurocxr.sweep: its native library is missing on this machine")

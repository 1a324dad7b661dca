"""Package discovery (everything else is in pyproject.toml).

`exporters/` and `hardware_sims/` live at the top of the repo (design card) but install inside the
`neurocxr` namespace: the PyPI name `exporters` belongs to another project. setuptools' declarative
`packages.find` cannot remap a folder to another package name, so the three trees are found here,
automatically: a new subpackage can never be left out of the wheel (tests/test_packaging.py checks).
"""

from setuptools import find_packages, setup

REMAPPED = {"neurocxr.exporters": "exporters", "neurocxr.hardware_sims": "hardware_sims"}

packages = find_packages(include=["neurocxr", "neurocxr.*"])
for name, folder in REMAPPED.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(where=folder)]

setup(packages=packages, package_dir=REMAPPED)

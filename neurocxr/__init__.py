"""neurocxr: train spiking chest X-ray classifiers, deploy them to Loihi 2, and compare energy honestly."""

__version__ = "0.1.0"

"""Errors users see. Each message names the problem and what to do about it; the CLI prints them
without a traceback."""

from __future__ import annotations


class NeurocxrError(Exception):
    """Base class: a problem with the user's input or setup, explained in the message."""


class ConfigError(NeurocxrError, ValueError):
    """An option or configuration value is out of range or unknown; the message lists what is accepted.
    Also a ValueError, so callers that caught ValueError from the config objects keep working."""


class DataError(NeurocxrError):
    """A data file or folder is missing, malformed or not what it claims to be."""


class CheckpointError(NeurocxrError):
    """A checkpoint cannot be read or does not belong to neurocxr."""


class ExportError(NeurocxrError):
    """A model cannot be exported as asked."""


class UnsupportedLayerError(ExportError):
    """A layer Loihi (or NIR) cannot hold; the message names the layer and why."""


class QuantisationError(ExportError):
    """Quantising to Loihi's integer ranges would clip and change the model's behaviour."""


class ResourceError(ExportError):
    """The network does not fit the target chip(s)."""


class SimulationError(NeurocxrError):
    """The emulator or Lava could not run the program on the given inputs."""


class ProfileError(NeurocxrError):
    """An energy device profile is missing a field or holds an impossible value."""


class MeasurementUnavailable(NeurocxrError):
    """The hardware counter needed for a measurement is not present here (the reason says why)."""


class ModelKindError(NeurocxrError, ValueError):
    """A model of the wrong kind for the command (a CNN where an SNN is needed, or the reverse);
    the message says what the model is and which command or option takes it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, after the command cleaned up; the message says what it left (the CLI prints it and
    exits 130). A KeyboardInterrupt, so code that stops on Ctrl-C stops on it too."""

"""Torch's intra-op thread count, changed for one call and given back afterwards.

The library never leaves a caller's ``torch.set_num_threads`` changed: training, the emulator and a
sweep trial that run on a chosen thread count restore the previous one when they return.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch threads (``None``: the caller's setting), then restore."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def restores_torch_threads(fn: F) -> F:
    """Decorator: whatever thread count ``fn`` sets inside, the caller's is back when it returns."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch_threads(None):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

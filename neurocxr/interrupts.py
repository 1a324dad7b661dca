"""Ctrl-C that is never lost while a child process is being forked.

Python runs ``os.register_at_fork`` callbacks (logging's lock release, multiprocessing's, ...)
around every fork, also the forks of ``subprocess`` with a ``preexec_fn`` (Ray's services) and of
``multiprocessing`` (Lava's runtime workers). A KeyboardInterrupt raised inside one of those
callbacks is printed as "Exception ignored in ..." and dropped: the command then ran on as if
Ctrl-C had never been pressed. `install` replaces Python's default SIGINT handler by one that,
while a fork is in progress, notes the signal and delivers it (`_thread.interrupt_main`) once the
fork is over; at any other moment it raises KeyboardInterrupt at once, exactly as before.

The same drop happens when the signal lands in a weakref callback or a ``__del__`` (matplotlib's
transform tree has such callbacks): `install` also sets a ``sys.unraisablehook`` that, for a dropped
KeyboardInterrupt, delivers the signal again instead of printing "Exception ignored".
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from typing import Any

__all__ = ["install", "forget_caught_interrupt", "disarm_half_built_finalizers"]

_forking = 0  # forks in progress in this process (their callbacks are running)
_pending = False  # a SIGINT arrived during a fork and is still to be delivered
_installed = False


def _before_fork() -> None:
    global _forking
    _forking += 1


def _after_fork_in_parent() -> None:
    global _forking, _pending
    _forking = max(0, _forking - 1)
    if _pending and not _forking:
        _pending = False
        # not from here: an exception raised in this callback would be dropped as well
        threading.Thread(target=_deliver_later, name="neurocxr-sigint", daemon=True).start()


def _unraisable(unraisable: Any) -> None:
    """A KeyboardInterrupt Python could not raise (in a weakref callback, ``__del__``, at-fork
    callback): deliver Ctrl-C again a moment later; anything else goes to the previous hook."""
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        threading.Thread(target=_deliver_later, name="neurocxr-sigint", daemon=True).start()
        return
    _previous_unraisablehook(unraisable)


_previous_unraisablehook = sys.unraisablehook


def _after_fork_in_child() -> None:
    global _forking, _pending
    _forking, _pending = 0, False


def _deliver_later() -> None:
    time.sleep(0.05)  # let the main thread leave the fork's callbacks
    if hasattr(signal, "pthread_kill"):
        # a real signal to the main thread: it also ends a wait the main thread is blocked in
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    else:  # pragma: no cover - not POSIX
        _thread.interrupt_main()


def _on_sigint(signum: int, frame: Any) -> None:
    global _pending
    if _forking:
        _pending = True
        return
    raise KeyboardInterrupt


def forget_caught_interrupt() -> None:
    """Clear CPython 3.10's "unhandled KeyboardInterrupt" flag before exiting after a caught Ctrl-C.

    CPython sets ``_Py_UnhandledKeyboardInterrupt`` whenever a KeyboardInterrupt leaves code run by
    ``PyRun_String`` (Cython modules run such code while they import), even when Python code
    further up catches it. Run as ``python -m neurocxr.cli``, the interpreter checks the flag after
    ``sys.exit(130)`` and kills itself with SIGINT, so the exit code is -2 instead (the flag was set
    in 2 of 60 and 2 of 80 Ctrl-Cs sent 1.5-2.5 s into `neurocxr export`, while it imports). The
    flag is internal: where the symbol is not exported, nothing is done."""
    import ctypes

    try:
        flag = ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt")
    except (ValueError, AttributeError, OSError):  # not exported by this interpreter build
        return
    flag.value = 0


def disarm_half_built_finalizers() -> None:
    """Silence ``multiprocessing`` finalizers that a Ctrl-C cut off inside ``Finalize.__init__``.

    Lava's runtime creates them while it starts its workers. Interrupted after the weak reference
    was made but before ``_key`` was set, such a finalizer still runs when its object dies at
    shutdown, and fails there: "Exception ignored in: <Finalize object, dead> ... AttributeError:
    'Finalize' object has no attribute '_key'" (seen once in a full test run, after the command had
    already said it was interrupted). It was never registered, so it has nothing to run: a key the
    registry does not hold makes ``__call__`` return quietly."""
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return
    import gc

    for obj in gc.get_objects():
        # type(), not isinstance(): isinstance reads __class__ through objects' own __getattribute__
        # (torch.distributed's deprecated reduce_op then prints a warning after "interrupted:")
        if issubclass(type(obj), util.Finalize) and not hasattr(obj, "_key"):
            obj._key = object()


def install() -> None:
    """Use the fork-safe handler for SIGINT when Python's default handler is in place (in the main
    thread only; another handler someone installed is left alone). Idempotent."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return
    if not _installed and hasattr(os, "register_at_fork"):
        # registered late: ours runs first before a fork and last after it, around the others
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
        _installed = True
    if _installed and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    if sys.unraisablehook is not _unraisable:
        global _previous_unraisablehook
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _unraisable

"""What reaches the terminal: edge's own lines always; library warnings, library log records and native log
lines (C++ runtimes writing to file descriptor 2) only under `edge --verbose`."""

from __future__ import annotations

import logging
import os
import sys
import warnings


class _WarningLines(logging.Handler):
    """edge's log records as `warning: ...` lines on the current sys.stderr (looked up per record, so that a test
    runner's swapped stream gets them)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"warning: {record.getMessage()}\n")


def show_edge_warnings() -> None:
    """Records of the `edge` logger (a recomputed cache entry, ...) print as one `warning:` line each."""
    logger = logging.getLogger("edge")
    if not any(isinstance(handler, _WarningLines) for handler in logger.handlers):
        logger.addHandler(_WarningLines(logging.WARNING))
        logger.propagate = False


def quiet_libraries() -> None:
    """Python warnings and other libraries' log records dropped; fd 2 sent to /dev/null for native code while
    Python's sys.stderr (edge's error lines, progress, tracebacks) keeps the terminal."""
    warnings.filterwarnings("ignore")
    # explicit levels on the emitting loggers: torch sets its own loggers' levels when it is imported
    for name in ("torchao", "torch.utils._pytree", "diffusers", "diffusers.quantizers.torchao.torchao_quantizer",
                 "coremltools", "executorch", "litert_torch", "ai_edge_litert",
                 "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _native_stderr_to_devnull()


def _native_stderr_to_devnull() -> None:
    try:
        if sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError):  # a test runner's in-memory stream: leave the process's fd 2 alone
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")

"""One small progress helper for long steps (rich, which Typer uses); silent when asked (--json)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_steps(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """Yields on_step(done, total); draws a bar on stderr while enabled, from the first step on (so a
    command that fails while checking its input prints only its error line)."""
    if not enabled:
        yield lambda done, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    progress = Progress(*columns, console=Console(stderr=True), transient=False)
    task = progress.add_task(description, total=None)

    def on_step(done: int, total: int) -> None:
        progress.start()  # no-op once started
        progress.update(task, completed=done, total=total)

    try:
        yield on_step
    finally:
        progress.stop()

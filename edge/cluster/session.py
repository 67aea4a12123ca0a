"""A Ray session for edge's commands: join the cluster at an address, or start an embedded one on this machine.

Each task asks for `threads` CPUs and runs torch with exactly that many threads, so that its floating-point
reductions are those of a serial run with the same thread count: the merged numbers are then the serial run's,
to the last digit. Tasks whose worker dies (killed, out of memory, node lost) are retried by Ray; a task that
raises is not: its error is the entry's.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TypeVar

from edge.errors import EdgeError

LOCAL = "local"  # `--ray`: an embedded Ray on this machine, stopped at the end
TASK_RETRIES = 3  # attempts after a worker dies mid-task
CONNECT_SECONDS = 10  # to reach a cluster's head
T = TypeVar("T")


def _import_ray():
    try:
        import ray
    except ImportError as err:
        raise EdgeError("--ray: Ray is not installed (pip install 'edge[ray]')") from err
    return ray


class EdgeWorker:
    """A Ray actor holding worker(*init_args), built once in its process. An EdgeError while building it (a file the
    worker cannot see) is raised by each call, where it reaches the driver as itself (Ray reports an actor whose
    construction failed without its cause)."""

    def __init__(self, worker: type, init_args: tuple):
        try:
            self.worker, self.error = worker(*init_args), None
        except EdgeError as err:
            self.worker, self.error = None, err

    def call(self, method: str, item):
        if self.error is not None:
            raise self.error
        return getattr(self.worker, method)(item)


@dataclass(frozen=True)
class RaySession:
    ray: object  # the ray module
    address: str  # LOCAL or the cluster's address
    threads: int  # torch threads (and CPUs) per task

    @property
    def slots(self) -> int:
        """Tasks that can run at once: the cluster's CPUs over the CPUs each task takes."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)) // self.threads)

    def map_on_workers(self, worker: type, init_args: tuple, method: str, items: Sequence,
                       on_done: Callable[[int, int], None] = lambda done, total: None) -> list:
        """[worker(*init_args).method(item) for item in items], on up to `slots` Ray actors: each worker is built
        once (its models loaded once) and given the next item whenever it is free; a worker whose process dies is
        built again and its item retried. Results in the items' order; an EdgeError raised by a worker is raised
        here."""
        actor = self.ray.remote(num_cpus=self.threads, max_restarts=TASK_RETRIES,
                                max_task_retries=TASK_RETRIES)(EdgeWorker)
        actors = [actor.remote(worker, init_args) for _ in range(min(self.slots, len(items)))]
        waiting, running, results = list(enumerate(items)), {}, {}
        try:
            while waiting or running:
                while waiting and len(running) < len(actors):
                    free = next(a for a in actors if all(a is not busy for busy, _ in running.values()))
                    index, item = waiting.pop(0)
                    running[free.call.remote(method, item)] = (free, index)
                [ready], _ = self.ray.wait(list(running), num_returns=1)
                _, index = running.pop(ready)
                results[index] = self.get(ready)
                on_done(len(results), len(items))
        finally:
            for handle in actors:
                self.ray.kill(handle)
        return [results[index] for index in range(len(items))]

    def get(self, ref):
        """A task's result; its EdgeError (a bad input met inside the task) raised as itself."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:
            if isinstance(err.cause, EdgeError):
                raise err.cause from None
            raise

    def remote(self, function: Callable):
        """function as a Ray task of this session: its CPUs, retried when its worker dies, never on its own error."""
        return self.ray.remote(num_cpus=self.threads, max_retries=TASK_RETRIES, retry_exceptions=False)(function)


@contextmanager
def ray_session(address: str, threads: int = 1, cpus: int | None = None) -> Iterator[RaySession]:
    """address LOCAL: an embedded Ray with `cpus` CPUs (default: all of this machine's); else the running cluster
    at address (host:port, or "auto" for the one `ray start` left on this machine). Disconnects at the end."""
    if address not in (LOCAL, "auto") and ":" not in address:
        raise EdgeError(f"--ray-address {address}: not a Ray address (host:port, ray://host:port or auto)")
    if address not in (LOCAL, "auto"):
        _require_listening(address)
    ray = _import_ray()
    if address == LOCAL:
        options = {"num_cpus": cpus or os.cpu_count() or 1}
    else:
        options = {"address": address}
    try:
        ray.init(**options, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise EdgeError(f"--ray-address {address}: cannot join a Ray cluster there ({str(err).splitlines()[0]})") from err
    try:
        # Ray's driver prints the cluster's error messages (a worker died, its task retried) on sys.stdout: they
        # go to stderr, so that stdout carries edge's result alone (--json)
        with redirect_stdout(sys.stderr):
            yield RaySession(ray, address, threads)
    finally:
        ray.shutdown()


def _require_listening(address: str) -> None:
    """EdgeError unless something accepts connections at host:port (Ray itself retries an absent head for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except (OSError, ValueError) as err:
        raise EdgeError(f"--ray-address {address}: no Ray cluster answers there ({err})") from err


def with_absolute_paths(request: T) -> T:
    """A request (a dataclass) with its paths made absolute, for workers that do not share the driver's cwd."""
    paths = {f.name: getattr(request, f.name) for f in fields(request) if isinstance(getattr(request, f.name), Path)}
    return replace(request, **{name: path.resolve() for name, path in paths.items()})


def set_task_threads(threads: int) -> None:
    """In a task: torch's threads, as the serial run it must reproduce."""
    import torch

    torch.set_num_threads(threads)

"""The one queue every model job goes through: one thread runs them in arrival order, so two
forward passes never run at once on the shared model, and a bounded number may wait."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """More jobs are waiting than the server allows (sent back as 429)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the model queue is full: {limit} jobs are already waiting or running "
            f"(the limit is {limit}); try again in a moment"
        )


class ModelWorker:
    """Runs model jobs one at a time; at most ``max_jobs`` are queued or running at once."""

    def __init__(self, max_jobs: int) -> None:
        self.max_jobs = max_jobs
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saescope-model")
        self._jobs: OrderedDict[str, bool] = OrderedDict()  # ticket -> running, oldest first
        self._lock = threading.Lock()

    def ahead(self, ticket: str) -> int | None:
        """How many jobs run or wait before ``ticket`` (None: not queued, or already done)."""
        with self._lock:
            if ticket not in self._jobs:
                return None
            return list(self._jobs).index(ticket)

    def pending(self) -> int:
        with self._lock:
            return len(self._jobs)

    async def run(self, fn: Callable[..., T], *args: Any, ticket: str | None = None) -> T:
        """``fn(*args)`` on the model thread, after the jobs queued before it."""
        with self._lock:
            if len(self._jobs) >= self.max_jobs:
                raise QueueFull(self.max_jobs)
            if not ticket or ticket in self._jobs:
                ticket = uuid.uuid4().hex
            self._jobs[ticket] = False

        def job() -> T:
            with self._lock:
                self._jobs[ticket] = True
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._jobs.pop(ticket, None)

        future: Future[T] = self._executor.submit(job)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # The client went away: a job that has not started is dropped (and leaves the
            # queue); one that has started finishes on the model thread and leaves then.
            if future.cancel():
                with self._lock:
                    self._jobs.pop(ticket, None)
            raise

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

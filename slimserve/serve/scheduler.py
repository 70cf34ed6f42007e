"""The scheduler: a bounded queue in front of one engine, driven by one thread (the engine is not thread-safe).

Between decode steps it ends sequences (stop token, max tokens, a stop string its caller saw, cancellation,
timeout), then admits waiting ones while the engine has free slots, then steps every active sequence by one token.
Admission is capped at ``prefill_tokens`` prompt tokens per step (at least one prompt): each prefill stalls every
running sequence, so a burst of arrivals is spread over several steps and the inter-token latency of the running
ones stays near one step plus one prefill, instead of one step plus the whole burst.
With ``slots`` > 1 this is continuous batching; with one slot it serves requests one after the other, FIFO.
Past ``slots + max_queue`` outstanding requests ``submit`` raises QueueFull (the server answers 429).

A failure while prefilling fails that request only. A failure in a batched step fails the sequences in that step
(they shared the call) and the scheduler carries on with the next requests.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .engines import SamplingParams

FINISH_STOP, FINISH_LENGTH = "stop", "length"
FINISH_CANCELLED, FINISH_TIMEOUT, FINISH_ERROR, FINISH_SHUTDOWN = "cancelled", "timeout", "error", "shutdown"


class QueueFull(Exception):
    def __init__(self, depth: int, retry_after_s: int):
        super().__init__(f"the queue is full ({depth} requests waiting)")
        self.depth, self.retry_after_s = depth, retry_after_s


@dataclass
class GenRequest:
    """One sequence to generate. Callbacks run on the scheduler thread and must be quick.

    on_token(token) -> True ends the sequence with finish "stop" (e.g. its text reached a stop string).
    With params.logprobs, `logprobs` holds each delivered token's log-prob (appended before on_token sees it).
    on_done(finish_reason, error) is called exactly once.
    """

    ids: list[int]
    max_new: int
    params: SamplingParams = field(default_factory=SamplingParams)
    stop_ids: frozenset[int] = frozenset()  # ends the sequence (not emitted), besides the engine's eos ids
    on_token: Callable[[int], bool] = lambda _t: False
    on_done: Callable[[str, BaseException | None], None] = lambda _r, _e: None
    timeout_s: float | None = None
    key: int = field(default_factory=itertools.count().__next__)
    submitted: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    produced: int = 0
    last: int = -1
    first_token_at: float | None = None
    logprobs: list[float] = field(default_factory=list)

    def cancel(self) -> None:
        """Ask the scheduler to end this sequence (client gone); it frees the slot before its next step."""
        self.cancelled = True


class Scheduler:
    """Bounded queue + batch loop over one engine. Call start() once, stop() at shutdown."""

    def __init__(self, engine: Any, *, max_queue: int = 64, name: str = "model", observe: Any = None,
                 prefill_tokens: int = 64):  # fmt: skip
        self.engine, self.max_queue, self.name = engine, max_queue, name
        self.prefill_tokens = prefill_tokens
        self.observe = observe  # metrics hooks: queue(depth, running), step(n, seconds)
        self.waiting: collections.deque[GenRequest] = collections.deque()
        self.active: dict[int, GenRequest] = {}
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=f"scheduler-{name}", daemon=True)
        self.step_s_ema = 0.05  # for Retry-After

    # --- the caller's side (any thread) ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, req: GenRequest) -> GenRequest:
        with self._cv:
            if self._closing:
                raise QueueFull(len(self.waiting), 1)
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(len(self.waiting), self._retry_after())
            self.waiting.append(req)
            self._cv.notify()
        return req

    def cancel(self, req: GenRequest) -> None:
        req.cancel()
        with self._cv:
            self._cv.notify()

    @property
    def depth(self) -> int:
        return len(self.waiting)

    @property
    def running(self) -> int:
        return len(self.active)

    def stop(self, grace_s: float = 0.0) -> None:
        """Stop admitting; let in-flight sequences finish for up to grace_s, then end the rest ("shutdown")."""
        with self._cv:
            self._closing = True
            self._deadline = time.monotonic() + grace_s
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(grace_s + 5)

    def _retry_after(self) -> int:
        # rough time until a slot frees: the queue ahead, at one step per token of an average request
        return max(1, int(len(self.waiting) / max(1, self.engine.slots) * 64 * self.step_s_ema) + 1)

    # --- the scheduler thread ----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closing and not self.waiting and not self.active:
                    self._cv.wait()
                if self._closing and (not self.active or time.monotonic() >= self._deadline):
                    self._drain()
                    return
            self._reap()
            if not self._closing:
                self._admit()
            self._step()
            if self.observe is not None:
                self.observe.queue(self.name, len(self.waiting), len(self.active))

    def _finish(self, req: GenRequest, reason: str, error: BaseException | None = None) -> None:
        if self.active.pop(req.key, None) is not None:
            try:
                self.engine.remove(req.key)
            except Exception:  # noqa: BLE001 (a failed free must not stop the loop)
                pass
        try:
            req.on_done(reason, error)
        except Exception:  # noqa: BLE001
            pass

    def _drain(self) -> None:
        for req in list(self.active.values()):
            self._finish(req, FINISH_SHUTDOWN)
        while self.waiting:
            self._finish(self.waiting.popleft(), FINISH_SHUTDOWN)

    def _expired(self, req: GenRequest, now: float) -> bool:
        return req.timeout_s is not None and now - req.submitted > req.timeout_s

    def _reap(self) -> None:
        now = time.monotonic()
        for req in list(self.active.values()):
            if req.cancelled:
                self._finish(req, FINISH_CANCELLED)
            elif self._expired(req, now):
                self._finish(req, FINISH_TIMEOUT)
        with self._cv:
            keep = collections.deque()
            gone = []
            for req in self.waiting:
                (gone if req.cancelled or self._expired(req, now) else keep).append(req)
            self.waiting = keep
        for req in gone:
            self._finish(req, FINISH_CANCELLED if req.cancelled else FINISH_TIMEOUT)

    def _admit(self) -> None:
        spent = 0
        while len(self.active) < self.engine.slots:
            with self._cv:
                if not self.waiting or (spent and spent + len(self.waiting[0].ids) > self.prefill_tokens):
                    return
                req = self.waiting.popleft()
            spent += len(req.ids)
            try:
                tok = self.engine.add(req.key, req.ids, req.params)
            except Exception as e:  # noqa: BLE001 (this request fails; the others go on)
                self._finish(req, FINISH_ERROR, e)
                continue
            self.active[req.key] = req
            req.first_token_at = time.monotonic()
            self._deliver(req, tok)

    def _step(self) -> None:
        if not self.active:
            return
        t0 = time.perf_counter()
        try:
            out = self.engine.step({k: r.last for k, r in self.active.items()})
        except Exception as e:  # noqa: BLE001 (the batch shared the call: fail its sequences, keep serving)
            for req in list(self.active.values()):
                self._finish(req, FINISH_ERROR, e)
            return
        dt = time.perf_counter() - t0
        self.step_s_ema = 0.9 * self.step_s_ema + 0.1 * dt
        if self.observe is not None:
            self.observe.step(self.name, len(out), dt)
        for key, tok in out.items():
            req = self.active.get(key)
            if req is not None:
                self._deliver(req, tok)

    def _deliver(self, req: GenRequest, tok: int) -> None:
        """Hand a picked token to its request, or end the request (stop token, length, stop string, error)."""
        if tok in req.stop_ids or tok in self.engine.eos_ids:
            self._finish(req, FINISH_STOP)
            return
        req.produced += 1
        req.last = tok
        if req.params.logprobs:
            lp = self.engine.logprob(req.key)
            req.logprobs.append(float("nan") if lp is None else lp)
        try:
            stop = req.on_token(tok)
        except Exception as e:  # noqa: BLE001 (a failing consumer ends its own request only)
            self._finish(req, FINISH_ERROR, e)
            return
        if stop:
            self._finish(req, FINISH_STOP)
        elif req.produced >= req.max_new or len(req.ids) + req.produced >= self.engine.context_length:
            self._finish(req, FINISH_LENGTH)

"""The scheduler alone, on a fake engine: batching, the bounded queue, cancellation, stop tokens, fault isolation."""

from __future__ import annotations

import threading
import time

import pytest

from slimserve.serve.scheduler import GenRequest, QueueFull, Scheduler


class FakeEngine:
    """Emits prompt[-1] + 1, + 2, ... per sequence; records the largest batch it stepped."""

    target, context_length, tokenizer = "fake", 1000, None

    def __init__(self, slots: int = 2, delay_s: float = 0.0, eos: int = 999):
        self.slots, self.delay_s, self.eos_ids = slots, delay_s, {eos}
        self.live: set = set()
        self.max_batch = 0
        self.removed: list = []

    def add(self, key, ids, params):
        if ids == [666]:
            raise RuntimeError("poisoned prompt")
        self.live.add(key)
        return ids[-1] + 1

    def step(self, tokens):
        time.sleep(self.delay_s)
        self.max_batch = max(self.max_batch, len(tokens))
        assert set(tokens) == self.live
        return {k: t + 1 for k, t in tokens.items()}

    def remove(self, key):
        self.live.discard(key)
        self.removed.append(key)

    def close(self):
        pass


def _req(ids, max_new, **kw):
    out: list[int] = []
    done = threading.Event()
    res: dict = {}

    def on_done(reason, err):
        res.update(reason=reason, error=err)
        done.set()

    r = GenRequest(ids=ids, max_new=max_new, on_token=lambda t: out.append(t) or False, on_done=on_done, **kw)
    return r, out, done, res


@pytest.fixture()
def sched():
    made = []

    def make(engine, **kw):
        s = Scheduler(engine, **kw)
        s.start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def test_sequences_join_a_running_batch_and_finish_at_max_tokens(sched):
    eng = FakeEngine(slots=2, delay_s=0.002)
    s = sched(eng)
    reqs = [_req([10 * (i + 1)], 5 + i) for i in range(3)]
    for r, *_ in reqs:
        s.submit(r)
    for i, (_r, out, done, res) in enumerate(reqs):
        assert done.wait(5)
        assert res["reason"] == "length" and out == [10 * (i + 1) + k for k in range(1, 6 + i)]
    assert eng.max_batch == 2 and not eng.live and s.running == 0


def test_stop_token_ends_the_sequence_without_being_emitted(sched):
    eng = FakeEngine(slots=1, eos=13)
    s = sched(eng)
    r, out, done, res = _req([10], 50)
    s.submit(r)
    assert done.wait(5) and res["reason"] == "stop" and out == [11, 12]


def test_queue_full_raises_with_a_retry_hint(sched):
    eng = FakeEngine(slots=1, delay_s=0.05)
    s = sched(eng, max_queue=1)
    first = _req([1], 1000)
    s.submit(first[0])
    time.sleep(0.2)  # admitted: the queue is empty again
    s.submit(_req([2], 5)[0])
    with pytest.raises(QueueFull) as e:
        s.submit(_req([3], 5)[0])
    assert e.value.retry_after_s >= 1
    s.cancel(first[0])


def test_cancel_frees_the_slot_for_the_next_request(sched):
    eng = FakeEngine(slots=1, delay_s=0.01)
    s = sched(eng)
    long, _, long_done, long_res = _req([1], 10_000)
    nxt, out, done, res = _req([50], 3)
    s.submit(long)
    s.submit(nxt)
    time.sleep(0.1)
    s.cancel(long)
    assert long_done.wait(5) and long_res["reason"] == "cancelled" and long.key in eng.removed
    assert done.wait(5) and out == [51, 52, 53]


def test_a_failing_request_does_not_take_down_the_others(sched):
    eng = FakeEngine(slots=2)
    s = sched(eng)
    bad, _, bad_done, bad_res = _req([666], 3)
    good, out, done, _ = _req([5], 3)
    s.submit(bad)
    s.submit(good)
    assert bad_done.wait(5) and bad_res["reason"] == "error" and "poisoned" in str(bad_res["error"])
    assert done.wait(5) and out == [6, 7, 8]


def test_timeout_and_shutdown_end_requests(sched):
    eng = FakeEngine(slots=1, delay_s=0.01)
    s = sched(eng)
    r, _, done, res = _req([1], 10_000, timeout_s=0.1)
    s.submit(r)
    assert done.wait(5) and res["reason"] == "timeout"
    r2, _, done2, res2 = _req([1], 10_000)
    s.submit(r2)
    time.sleep(0.05)
    s.stop(grace_s=0.05)
    assert done2.wait(5) and res2["reason"] == "shutdown"


class CountingEngine(FakeEngine):
    """Records, for each decode step, how many prompts were prefilled since the previous step."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.adds_since_step = 0
        self.adds_per_step: list[int] = []

    def add(self, key, ids, params):
        self.adds_since_step += 1
        return super().add(key, ids, params)

    def step(self, tokens):
        self.adds_per_step.append(self.adds_since_step)
        self.adds_since_step = 0
        return super().step(tokens)


@pytest.mark.parametrize(("budget", "prompt_len", "most"), [(64, 30, 2), (59, 30, 1), (1, 30, 1), (1000, 30, 8)])
def test_a_burst_of_prompts_is_admitted_within_the_prefill_budget_per_step(sched, budget, prompt_len, most):
    eng = CountingEngine(slots=8, delay_s=0.002)
    s = Scheduler(eng, prefill_tokens=budget)  # not started: the burst is queued before the loop runs
    reqs = [_req(list(range(prompt_len)), 20) for _ in range(8)]
    for r, *_ in reqs:
        s.submit(r)
    s.start()
    try:
        for _r, out, done, res in reqs:
            assert done.wait(5) and res["reason"] == "length" and len(out) == 20
    finally:
        s.stop()
    # whole prompts up to the budget (floor(budget / len)), and at least one
    assert max(eng.adds_per_step) == most
    assert sum(eng.adds_per_step) == 8 and eng.max_batch == 8

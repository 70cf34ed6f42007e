"""Progress over a whole bench run: the planned steps, their measured durations, and an ETA.

The plan lists every step the run will take, in order: rounds x variants speed steps (one unit for the load plus one
per scenario), then one quality pass per variant (the reference first). The ETA adds up an estimate per step left:
the measured time of the same step (phase, variant) in an earlier round, else the mean of the phase's finished steps
(so the first round's variants predict each other), else a hint (quality: tokens to score over the prefill speed the
speed phase measured). Shown as a rich progress bar on a terminal, else as plain log lines ending in `eta`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Step:
    phase: str  # "speed" or "quality"
    variant: str
    units: int = 1  # what the progress total counts: the load and each scenario of a speed step, 1 per quality pass


def plan(variants: list[str], rounds: int, scenarios: list[str], quality: list[str]) -> list[Step]:
    """Speed steps round by round (variants interleaved, as the harness runs them), then the quality passes."""
    speed = [Step("speed", v, 1 + len(scenarios)) for _ in range(rounds) for v in variants]
    return speed + [Step("quality", v) for v in quality]


def fmt_s(seconds: float | None) -> str:
    """m:ss or h:mm:ss; '?' while unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass
class Tracker:
    """Which planned step runs, how long finished ones took, and what is left (pure but for the clock)."""

    steps: list[Step]
    clock: Callable[[], float] = time.monotonic
    hints: dict[str, float] = field(default_factory=dict)  # phase -> seconds per step, until one is measured
    current: int = -1  # index into steps; -1 before the first
    ticks: int = 0  # units done in the current step
    took: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (phase, variant) -> seconds

    def __post_init__(self) -> None:
        self.t0 = self.t_step = self.clock()

    @property
    def total_units(self) -> int:
        return sum(s.units for s in self.steps)

    @property
    def done_units(self) -> int:
        done = sum(s.units for s in self.steps[: max(self.current, 0)])
        return done + (min(self.ticks, self.steps[self.current].units) if 0 <= self.current < len(self.steps) else 0)

    def elapsed_s(self) -> float:
        return self.clock() - self.t0

    def _end_current(self) -> None:
        if 0 <= self.current < len(self.steps):
            s = self.steps[self.current]
            self.took.setdefault((s.phase, s.variant), []).append(self.clock() - self.t_step)

    def start_next(self) -> Step | None:
        """Finish the running step and start the next planned one (None past the end of the plan)."""
        self._end_current()
        self.current += 1
        self.ticks, self.t_step = 0, self.clock()
        return self.steps[self.current] if self.current < len(self.steps) else None

    def finish(self) -> None:
        """Finish the running step; nothing runs after it."""
        self._end_current()
        self.current, self.ticks = len(self.steps), 0

    def tick(self) -> None:
        self.ticks += 1

    def estimate_s(self, step: Step) -> float | None:
        same = self.took.get((step.phase, step.variant))
        if same:
            return statistics.fmean(same)
        phase = [x for (p, _), xs in self.took.items() if p == step.phase for x in xs]
        if phase:
            return statistics.fmean(phase)
        return self.hints.get(step.phase)

    def eta_s(self, *, partial: bool = False) -> float | None:
        """Seconds left; None while some step left has no estimate at all (partial: leave those steps out)."""
        left, guess = 0.0, {}
        if 0 <= self.current < len(self.steps):
            step, spent = self.steps[self.current], self.clock() - self.t_step
            est = self.estimate_s(step)
            if est is None and self.ticks:  # the first step of its phase: extrapolate from its finished units
                est = guess[step.phase] = spent / self.ticks * step.units
            if est is None and not partial:
                return None
            left += max(0.0, est - spent) if est is not None else 0.0
        for step in self.steps[self.current + 1 :]:
            est = self.estimate_s(step)
            est = guess.get(step.phase) if est is None else est
            if est is None and not partial:
                return None
            left += est or 0.0
        return left

    def eta_text(self) -> str:
        """m:ss; '>m:ss' while some steps left have no estimate yet (a lower bound); '?' with none at all."""
        eta = self.eta_s()
        if eta is not None:
            return fmt_s(eta)
        part = self.eta_s(partial=True)
        return f">{fmt_s(part)}" if part else "?"

    def status(self) -> str:
        return f"{self.done_units}/{self.total_units}, {fmt_s(self.elapsed_s())} elapsed, eta {self.eta_text()}"


def quality_hint_s(prefill_tok_s: float, tokens_per_pass: int) -> float:
    """A quality pass is forward passes over known tokens: their count over the measured prefill speed."""
    return tokens_per_pass / max(prefill_tok_s, 1e-9)


class BenchProgress:
    """The tracker plus its display: with live, a rich progress bar on stderr (messages print above it); else each
    step's first line goes to `log` with the step count, elapsed time and eta appended."""

    def __init__(
        self,
        steps: list[Step],
        *,
        log: Callable[[str], None],
        live: bool = False,
        quality_tokens: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.tracker = Tracker(steps, clock=clock)
        self._log, self._bar, self._task, self._quality_tokens = log, None, None, quality_tokens
        self._prefill: list[float] = []
        if live:
            self._bar = _rich_bar(self.tracker)
            self._task = self._bar.add_task("bench", total=self.tracker.total_units)

    def __enter__(self) -> BenchProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def log(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.console.print(msg, markup=False, highlight=False)
        else:
            self._log(msg)

    def step(self, msg: str) -> None:
        """The next planned step starts; msg says which."""
        self.tracker.start_next()
        self._update(msg)
        self.log(msg if self._bar is not None else f"{msg}  ({self.tracker.status()})")

    def tick(self, what: str = "") -> None:
        """One unit (a scenario) of the running step is done."""
        self.tracker.tick()
        self._update()

    def prefill_speed(self, tok_s: float) -> None:
        """A measured prefill tok/s: until a quality pass is timed, one is estimated from their median."""
        if tok_s > 0 and self._quality_tokens:
            self._prefill.append(tok_s)
            self.tracker.hints["quality"] = quality_hint_s(statistics.median(self._prefill), self._quality_tokens)

    def finish(self) -> None:
        """The run's measuring is over."""
        self.tracker.finish()
        self._update("measured")
        self.log(f"measured in {fmt_s(self.tracker.elapsed_s())}")

    def _update(self, description: str | None = None) -> None:
        if self._bar is None:
            return
        kw = {"description": description} if description is not None else {}
        self._bar.update(self._task, completed=self.tracker.done_units, **kw)


def _rich_bar(tracker: Tracker):  # noqa: ANN202
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class EtaColumn(ProgressColumn):
        """The tracker's ETA (from measured step times), not rich's own units-per-second guess."""

        def render(self, task) -> Text:  # noqa: ANN001
            return Text(f"eta {tracker.eta_text()}")

    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        EtaColumn(),
        console=Console(stderr=True),
        refresh_per_second=2,  # rendering shares the 2 cores with what is being timed
        transient=False,
    )

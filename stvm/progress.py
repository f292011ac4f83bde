"""The one progress display of every stage (prepare, train_source, adapt, evaluate), on stderr.

On a terminal the line is redrawn in place (carriage return, at most every ``min_interval`` s). In
a log file (``dvc repro``, Snakemake's ``logs/``, CI) whole lines are printed, at a bounded rate: one
each time another tenth is done, plus one whenever ``log_interval`` seconds passed since the last
(long runs stay visible without flooding the log: at most 10 + duration / log_interval lines).
Every line shows the count, percentage, rate and ETA, and the caller's latest values (loss, lr).
``enabled=False`` (``--quiet``) prints nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TextIO


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def format_progress(desc: str, done: int, total: int, elapsed: float, *, start: int = 0, unit: str = "",
                    values: Mapping[str, float] | None = None) -> str:
    """``desc: done/total (pct%) rate unit/s ETA h:mm:ss`` (``in h:mm:ss`` once finished), then values.

    The rate counts the items done since ``start`` (a resumed run does not count its earlier part).
    """
    pct = 100 * done // total if total else 100
    rate = (done - start) / elapsed if elapsed > 0 else 0.0
    if done >= total:
        tail = f"in {_clock(elapsed)}"
    else:
        tail = f"ETA {_clock((total - done) / rate)}" if rate > 0 else "ETA ?"
    per = f"{unit}/s" if unit else "/s"
    text = f"{desc}: {done}/{total} ({pct}%) {rate:.1f}{' ' if unit else ''}{per} {tail}"
    if values:
        text += " | " + " ".join(f"{k} {v:.4g}" for k, v in values.items())
    return text


class ProgressBar:
    """Counts finished items (images, iterations) and reports them on ``stream`` when ``enabled``."""

    def __init__(
        self,
        total: int,
        desc: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        min_interval: float = 0.2,
        *,
        start: int = 0,
        unit: str = "",
        log_interval: float = 60.0,
    ) -> None:
        self.total, self.desc, self.enabled, self.start, self.unit = total, desc, enabled, start, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval, self.log_interval = min_interval, log_interval
        self.done = start
        self.values: dict[str, float] = {}
        self._t0 = time.perf_counter()
        self._last_draw = float("-inf")
        self._last_line = self._t0
        self._last_decile = 10 * start // total if total else 0
        self._open_line = False

    def update(self, n: int = 1, values: Mapping[str, float] | None = None) -> None:
        """Record ``n`` more finished items (and the latest ``values``) and show them if it is time to."""
        self.set(self.done + n, values)

    def set(self, done: int, values: Mapping[str, float] | None = None) -> None:
        """Record that ``done`` items are finished in all."""
        self.done = done
        if values is not None:
            self.values = dict(values)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw >= self.min_interval or self.done >= self.total:
                self._last_draw = now
                self._write("\r" + self.text(now) + "\x1b[K")
                self._open_line = True
            return
        decile = 10 * self.done // self.total if self.total else 10
        if decile > self._last_decile or now - self._last_line >= self.log_interval:
            self._last_decile, self._last_line = max(decile, self._last_decile), now
            self._write(self.text(now) + "\n")

    def close(self) -> None:
        """End the in-place line on a terminal so whatever follows starts on a fresh line."""
        if self.enabled and self._open_line:
            self._write("\n")
            self._open_line = False

    def text(self, now: float | None = None) -> str:
        """The current progress line."""
        now = time.perf_counter() if now is None else now
        return format_progress(self.desc, self.done, self.total, now - self._t0, start=self.start, unit=self.unit,
                               values=self.values)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

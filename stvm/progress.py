"""A dependency-free progress bar for file-processing stages (stderr).

On a terminal the line is redrawn in place (carriage return, at most every ``min_interval`` s); in a
log file (DVC, Snakemake, CI) one line is printed each time another ~10 % is done, so logs stay
short.
Every line shows the count, percentage, rate and ETA.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def format_progress(desc: str, done: int, total: int, elapsed: float) -> str:
    """``desc: done/total (pct%) rate/s ETA h:mm:ss`` (``in h:mm:ss`` once finished)."""
    pct = 100 * done // total if total else 100
    rate = done / elapsed if elapsed > 0 else 0.0
    if done >= total:
        tail = f"in {_clock(elapsed)}"
    else:
        tail = f"ETA {_clock((total - done) / rate)}" if rate > 0 else "ETA ?"
    return f"{desc}: {done}/{total} ({pct}%) {rate:.1f}/s {tail}"


class ProgressBar:
    """Counts finished items and reports them on ``stream`` (stderr by default) when ``enabled``."""

    def __init__(
        self,
        total: int,
        desc: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        min_interval: float = 0.2,
    ) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval
        self.done = 0
        self._t0 = time.perf_counter()
        self._last_draw = float("-inf")
        self._last_decile = 0
        self._open_line = False

    def update(self, n: int = 1) -> None:
        """Record ``n`` more finished items and redraw/print if it is time to."""
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw >= self.min_interval or self.done >= self.total:
                self._last_draw = now
                self._write("\r" + self._text(now) + "\x1b[K")
                self._open_line = True
            return
        decile = 10 * self.done // self.total if self.total else 10
        if decile > self._last_decile:
            self._last_decile = decile
            self._write(self._text(now) + "\n")

    def close(self) -> None:
        """End the in-place line on a terminal so whatever follows starts on a fresh line."""
        if self.enabled and self._open_line:
            self._write("\n")
            self._open_line = False

    def _text(self, now: float) -> str:
        return format_progress(self.desc, self.done, self.total, now - self._t0)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The one progress display: rate and ETA, in place on a terminal, bounded whole lines in a log file."""

from __future__ import annotations

import io

import stvm.progress as progress_mod
from stvm.progress import ProgressBar, format_progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_line_has_rate_eta_unit_and_values_and_counts_only_this_runs_items():
    text = format_progress("train_source", 30, 100, 10.0, start=10, unit="it", values={"loss": 0.51234, "lr": 1e-3})
    assert text == "train_source: 30/100 (30%) 2.0 it/s ETA 0:00:35 | loss 0.5123 lr 0.001"
    assert format_progress("evaluate", 4, 4, 2.0, unit="img") == "evaluate: 4/4 (100%) 2.0 img/s in 0:00:02"


def test_log_file_lines_are_bounded_by_tenths_and_the_interval(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: clock[0])
    stream = io.StringIO()
    bar = ProgressBar(100_000, "adapt", stream=stream, log_interval=60.0, unit="it")
    for _ in range(600):  # 600 s at 1 it/s: no tenth is reached, one line a minute
        clock[0] += 1.0
        bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("adapt: 60/100000 (0%) 1.0 it/s ETA 27:")
    stream.truncate(0)
    bar.set(100_000)  # one call jumping to the end: one line, not ten
    assert len(stream.getvalue().splitlines()) == 1


def test_terminal_redraws_in_place_and_quiet_prints_nothing():
    stream = Tty()
    with ProgressBar(4, "x", stream=stream, min_interval=0.0) as bar:
        for _ in range(4):
            bar.update(values={"loss": 1.0})
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1 and "| loss 1" in text
    quiet = io.StringIO()
    with ProgressBar(4, "x", enabled=False, stream=quiet) as bar:
        bar.update(4)
    assert quiet.getvalue() == ""

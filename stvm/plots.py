"""CSV plot files in dvclive's layout (``dvc plots show`` reads them), resumable.

Each write rewrites the whole file atomically. On resume the rows past the checkpoint's iteration
are dropped, so the plot of a resumed run equals the uninterrupted one. Nothing is written before
the first row (or ``finish``), so a run that fails early leaves no header-only file behind.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from stvm.io import atomic_path


class PlotWriter:
    """Accumulate rows of named numeric columns and keep ``path`` up to date."""

    def __init__(self, path: Path, columns: list[str], resume_from: int = 0) -> None:
        self.path, self.columns = path, columns
        self.rows: list[dict[str, float]] = []
        if resume_from > 0 and path.exists():
            with path.open() as fh:
                self.rows = [r for r in csv.DictReader(fh) if float(r["iteration"]) <= resume_from]

    def row(self, values: dict[str, float]) -> None:
        """Append one row and rewrite the file."""
        self.rows.append({k: values[k] for k in self.columns})
        self._flush()

    def finish(self) -> None:
        """Write the file as it stands (header only for a run without rows, e.g. AdaBN)."""
        self._flush()

    def _flush(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        with atomic_path(self.path) as tmp:
            tmp.write_text(buf.getvalue())

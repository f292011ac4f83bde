"""Training-curve logs (a loop's logged scalars per iteration) as files DVC draws, resumable: one
CSV of every column (``plots/adapt.csv``, which the report and a resume read) and, derived from the
same rows at each write, dvclive's layout of one TSV per column (``plots/adapt/<column>.tsv``:
iteration and the value), which ``dvc plots show`` / ``dvc plots diff`` draw as one curve per column
when a stage declares the folder a plot.

Why not dvclive itself: it would be a second writer of the same numbers with its own resume rules
(ours drops the rows past the checkpoint, so a resumed run's files equal an uninterrupted run's),
and one more package in the image; its file layout is all DVC needs, and is what this writes.

Each write rewrites the files atomically. Nothing is written before the first row (or ``finish``),
so a run that fails early leaves no header-only file behind.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from stvm.io import atomic_path


class CurveLog:
    """A loop's curve log: accumulate rows of named numeric columns and keep ``path`` (and its
    one-TSV-per-column folder) up to date."""

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
        folder = self.path.with_suffix("")
        folder.mkdir(parents=True, exist_ok=True)
        x = self.columns[0]
        for col in self.columns[1:]:
            text = "".join(f"{r[x]}\t{r[col]}\n" for r in self.rows)
            with atomic_path(folder / f"{col}.tsv") as tmp:
                tmp.write_text(f"{x}\t{col}\n{text}")

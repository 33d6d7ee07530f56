"""The CSV tables the stages write, read back as the tests check them."""

from __future__ import annotations

import csv


def csv_rows(path) -> list[dict[str, str]]:
    """Every row of a CSV table, as {column: text}."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))

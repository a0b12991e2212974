"""Operator agreement (seed paper Table 3) from the verdicts the HMI stored, per explanation condition,
with 95 % Wilson intervals. Verdicts without a condition count as "map + sentence" (what the HMI shows
outside the study mode)."""
from __future__ import annotations

from pathlib import Path

from edge.audit.metrics import wilson_interval
from edge.errors import MissingFile

DEFAULT_CONDITION = "map + sentence"


def operator_agreement(store_path: Path) -> dict:
    from edge.record import InspectionStore

    if not Path(store_path).is_file():
        raise MissingFile(f"--store {store_path}: no such inspection store")
    verdicts = InspectionStore(store_path).verdicts()
    by: dict[str, list[int]] = {}
    for v in verdicts:
        by.setdefault(v["condition"] or DEFAULT_CONDITION, []).append(int(v["agree"]))
    out = {}
    for cond, agree in sorted(by.items()):
        lo, hi = wilson_interval(sum(agree), len(agree))
        out[cond] = {"agreement": sum(agree) / len(agree), "n": len(agree), "ci95": [lo, hi]}
    return out

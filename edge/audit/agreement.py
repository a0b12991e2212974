"""Operator agreement (seed paper Table 3) from the verdicts the HMI stored, per explanation condition,
with 95 % Wilson intervals. Verdicts without a condition count as "map + sentence" (what the HMI shows
outside the study mode). The store is a node's SQLite file or the plant database's postgresql:// URL
(every line's verdicts, `edge.record.plant`)."""
from __future__ import annotations

from pathlib import Path

from edge.audit.metrics import wilson_interval
from edge.errors import MissingFile

DEFAULT_CONDITION = "map + sentence"


def operator_agreement(store: Path | str) -> dict:
    from edge.record import InspectionStore
    from edge.record.plant import PlantDatabase, is_database_url

    if is_database_url(str(store)):
        plant = PlantDatabase(str(store))
        try:
            verdicts = plant.verdicts()
        finally:
            plant.close()
    elif not Path(store).is_file():
        raise MissingFile(f"--store {store}: no such inspection store")
    else:
        verdicts = InspectionStore(store).verdicts()
    by: dict[str, list[int]] = {}
    for v in verdicts:
        by.setdefault(v["condition"] or DEFAULT_CONDITION, []).append(int(v["agree"]))
    out = {}
    for cond, agree in sorted(by.items()):
        lo, hi = wilson_interval(sum(agree), len(agree))
        out[cond] = {"agreement": sum(agree) / len(agree), "n": len(agree), "ci95": [lo, hi]}
    return out

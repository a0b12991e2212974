"""The inspection record: every inspection, deferred explanation and operator verdict, kept in SQLite.

    from edge.record import Inspection, InspectionStore
    store = InspectionStore("inspections.sqlite")
"""
from edge.record.inspection import Attribution, Inspection, new_inspection_id, now_ms
from edge.record.store import InspectionStore, StoreError

__all__ = ["Attribution", "Inspection", "InspectionStore", "StoreError", "new_inspection_id", "now_ms"]

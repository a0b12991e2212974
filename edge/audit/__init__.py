"""The pre-deployment audit: does a model decide well, and do its explanations point at physics and
defects rather than artifacts? A report, metrics.json, and a gate that passes or fails it.

    from edge.audit import audit, evaluate_gate, load_policy, record_audit
"""
from edge._lazy import lazy_exports

_PUBLIC = {"audit": "run", "evaluate_gate": "gate", "load_policy": "gate", "record_audit": "gate",
           "Check": "gate", "cell_tolerance": "localisation", "operator_agreement": "agreement"}
__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC, globals())

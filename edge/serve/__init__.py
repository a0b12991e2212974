"""The inspection service: gRPC requests become jobs, micro-batches run the explainers, inspections go to
the record and the watchers. `edge.app.EdgeApp` runs it with the HMI as one node.

    from edge.serve import Node, ServeConfig
    node = Node(ServeConfig.load("node.toml"))       # await node.start(); await node.inspect(job)
"""
from edge._lazy import lazy_exports

_PUBLIC = {"ServeConfig": "config", "TLSConfig": "config", "Node": "node", "Server": "server", "Job": "domain",
           "Inspector": "inspector", "plan": "inspector", "build_job": "servicer", "to_proto": "servicer",
           "status_for": "servicer", "run_stations": "station", "make_requests": "station",
           "encode_frame": "frames", "decode_planes": "frames", "decode_frame": "frames"}
__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC, globals())

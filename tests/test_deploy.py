"""The deployment files agree with the code: every example config loads, the compose file's services,
ports and names match the node's config and Prometheus' targets. (No container runtime runs here: the
compose file itself is not started by the tests.)"""
from pathlib import Path

import yaml

from edge.serve.config import ServeConfig

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_the_example_node_config_loads_with_every_section():
    cfg = ServeConfig.load(DEPLOY / "node.example.toml")
    assert cfg.tls.enabled and cfg.opcua.endpoint and not cfg.opcua.anonymous
    assert cfg.plant.database.startswith("postgresql://") and ":" not in cfg.plant.database.split("@")[0][13:]


def test_the_compose_file_wires_node_plant_database_and_prometheus():
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"node", "postgres", "prometheus"}
    node = ServeConfig.load(DEPLOY / "compose" / "node.toml")
    db = services["postgres"]["environment"]
    # the node's database URL names the compose service, its user and database; the password is not in it
    assert node.plant.database == f"postgresql://{db['POSTGRES_USER']}@postgres:5432/{db['POSTGRES_DB']}"
    assert services["node"]["environment"]["PGPASSWORD"] == db["POSTGRES_PASSWORD"]
    hmi_port = node.hmi.rsplit(":", 1)[1]
    grpc_port = node.grpc.rsplit(":", 1)[1]
    published = {p.split(":")[1] for p in services["node"]["ports"]}
    assert {hmi_port, grpc_port, "4840"} <= published
    prom = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == [f"node:{hmi_port}"]
    assert any(v.startswith("./prometheus.yml:") for v in services["prometheus"]["volumes"])
    dockerfile = (DEPLOY / "compose" / "Dockerfile.node").read_text()
    assert "[opcua,plant]" in dockerfile and "edge_xai-*.whl" in dockerfile      # from the wheel, with the extras

"""deploy/: the recipes that cannot run here are at least well-formed (YAML parses, references resolve)."""

from __future__ import annotations

from pathlib import Path

import yaml

from pansharp_dist.cluster import WORKER_MALLOC

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_kubernetes_manifests_parse():
    docs = [d for f in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    assert sorted(d["kind"] for d in docs) == ["DaskCluster", "DaskWorkerGroup", "Deployment"]
    gpu = next(d for d in docs if d["kind"] == "DaskWorkerGroup")["spec"]["worker"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1 and "GPU=1" in gpu["args"]


def test_compose_file_is_consistent():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "dask-scheduler", "dask-gpu-worker", "prefect-worker"} <= set(services)
    for name, service in services.items():
        assert "image" in service, name
        for dep in service.get("depends_on", []):
            assert dep in services, (name, dep)
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], (name, secret)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in compose.get("volumes", {}), (name, volume)
    assert "GPU=1" in services["dask-gpu-worker"]["command"]


def test_prefect_yaml_names_existing_flows_and_the_event_trigger():
    config = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    repo = DEPLOY.parent
    for deployment in config["deployments"]:
        path, func = deployment["entrypoint"].split(":")
        assert f"def {func}(" in (repo / path).read_text()
    scene = next(d for d in config["deployments"] if d["name"] == "pansharpen-scene")
    assert scene["triggers"][0]["expect"] == ["pansharp.scene.ready"]
    catalog = next(d for d in config["deployments"] if d["name"] == "reprocess-catalog")
    assert catalog["schedules"][0]["cron"]


def test_slurm_example_compiles_and_dockerfiles_pin_versions():
    compile((DEPLOY / "slurm" / "cluster.py").read_text(), "cluster.py", "exec")
    for name in ("Dockerfile.cpu", "Dockerfile.cuda"):
        text = (DEPLOY / "docker" / name).read_text()
        assert "torch==2.13.0" in text and "FROM " in text
        assert all(f"{k}={v}" in text for k, v in WORKER_MALLOC.items()), f"{name} lacks the workers' malloc settings"

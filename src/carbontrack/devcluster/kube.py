"""Small Kubernetes API helpers on the official Python client, each taking the
kubeconfig explicitly (no process-wide client configuration)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config, utils
from kubernetes.client.exceptions import ApiException


def api_client(kubeconfig: Path) -> client.ApiClient:
    """A fresh ApiClient for ``kubeconfig`` (callers close it, or use it in ``with``)."""
    cfg = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=cfg
    )
    return client.ApiClient(configuration=cfg)


def create_nodes(kubeconfig: Path, manifests: Iterable[dict[str, Any]]) -> None:
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        for m in manifests:
            try:
                core.create_node(cast(Any, m))  # the client accepts plain dicts
            except ApiException as err:
                if err.status != 409:  # already there: a re-run against the same cluster
                    raise


def service_account_exists(kubeconfig: Path, namespace: str, name: str) -> bool:
    with api_client(kubeconfig) as api:
        try:
            client.CoreV1Api(api).read_namespaced_service_account(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
    return True


def nodes_ready(kubeconfig: Path, names: Sequence[str]) -> bool:
    with api_client(kubeconfig) as api:
        nodes = client.CoreV1Api(api).list_node().items
    ready = {
        n.metadata.name
        for n in nodes
        if n.metadata is not None and n.status is not None
        and any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
    }
    return set(names) <= ready


def apply_manifests(kubeconfig: Path, path: Path, namespace: str | None = None) -> None:
    """Create the objects of a YAML file (CRDs, examples); existing ones are left alone."""
    with api_client(kubeconfig) as api:
        try:
            utils.create_from_yaml(  # type: ignore[no-untyped-call]
                api, str(path), namespace=namespace
            )
        except utils.FailToCreateError as err:
            real = [e for e in err.api_exceptions if getattr(e, "status", None) != 409]
            if real:
                raise

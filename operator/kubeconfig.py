"""Where the API server is and how to log in, shared by kopf (its login) and the operator's
own API transport; read with carbontrack.core.apiconfig (no ``kubernetes`` client).

In a pod (``KUBERNETES_SERVICE_HOST`` set and a service account token mounted) and without
``--kubeconfig``: the service account. Otherwise the kubeconfig file: ``--kubeconfig``, else
the first existing file of ``$KUBECONFIG`` (kubectl merges a list; the operator reads one
file), else ``~/.kube/config``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kopf

from carbontrack.core.apiconfig import SERVICE_ACCOUNT_DIR, ApiEndpoint, from_kubeconfig, in_cluster
from carbontrack.core.errors import ConfigError

FIX = "pass --kubeconfig FILE or run in a pod with a service account"


def load_endpoint(kubeconfig: str | None, env: Mapping[str, str] = os.environ,
                  sa_dir: Path = SERVICE_ACCOUNT_DIR) -> ApiEndpoint:
    """The API endpoint: in-cluster, or a kubeconfig file (module docstring). Errors are one
    ConfigError that names the file and the fix, never a line of the file (it may hold a
    token or key)."""
    try:
        if kubeconfig is None and env.get("KUBERNETES_SERVICE_HOST") and (sa_dir / "token").is_file():
            return in_cluster(env, sa_dir)
        return from_kubeconfig(default_kubeconfig(env) if kubeconfig is None else Path(kubeconfig))
    except ConfigError as err:
        # apiconfig's message already leaves out the file's lines; its cause may not: dropped
        raise ConfigError(f"cannot load Kubernetes credentials ({err}): {FIX}") from None


def default_kubeconfig(env: Mapping[str, str]) -> Path:
    listed = [Path(p).expanduser() for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    for path in listed:
        if path.is_file():
            return path
    if listed:
        raise ConfigError(f"no file of $KUBECONFIG exists ({env['KUBECONFIG']})")
    return Path(env.get("HOME") or Path.home()) / ".kube" / "config"


def connection_info(endpoint: ApiEndpoint) -> kopf.ConnectionInfo:
    """kopf's login from the endpoint: the same server, CA, client certificate and token
    (read now: kopf logs in again after a 401, which reads a rotated token file again)."""
    header = endpoint.credentials().get("Authorization", "")
    scheme, _, token = header.partition(" ")
    tls = endpoint.tls
    return kopf.ConnectionInfo(
        server=endpoint.url,
        ca_path=str(tls.ca_path) if tls is not None and tls.ca_path is not None else None,
        ca_data=tls.ca_data if tls is not None else None,
        insecure=tls.insecure if tls is not None else None,
        scheme=scheme or None,
        token=token or None,
        certificate_data=tls.certificate if tls is not None else None,
        private_key_data=tls.private_key if tls is not None else None,
    )


def login_handler(endpoint: ApiEndpoint) -> Callable[..., kopf.ConnectionInfo]:
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(endpoint)

    return login

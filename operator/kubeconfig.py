"""One Kubernetes client configuration, shared by kopf (login) and our own API calls."""

from __future__ import annotations

from typing import Any

import kopf
import yaml
from kubernetes import client, config

from carbontrack.core.errors import ConfigError
from carbontrack.core.redact import yaml_problem


def load_configuration(kubeconfig: str | None) -> client.Configuration:
    """In-cluster service account when no kubeconfig is given and we run in a pod, else the
    kubeconfig file (``--kubeconfig``, then $KUBECONFIG, then ~/.kube/config)."""
    cfg = client.Configuration()
    try:
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
                return cfg
            except config.ConfigException:
                pass
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=cfg
        )
    except (config.ConfigException, OSError) as err:
        raise ConfigError(
            f"cannot load Kubernetes credentials ({err}): pass --kubeconfig FILE or run in a pod "
            "with a service account"
        ) from err
    except yaml.YAMLError as err:  # its lines may hold tokens: the position only, no cause
        raise ConfigError(
            f"cannot load Kubernetes credentials (the kubeconfig is not valid YAML: "
            f"{yaml_problem(err)}): pass --kubeconfig FILE"
        ) from None
    return cfg


def connection_info(cfg: client.Configuration) -> kopf.ConnectionInfo:
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (
        parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def login_handler(cfg: client.Configuration) -> Any:
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(cfg)

    return login

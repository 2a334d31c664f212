# syntax=docker/dockerfile:1
# CarbonTrack operator image (the chart's operator Deployment).
#   docker build -f docker/operator.Dockerfile -t ghcr.io/carbontrack/operator:$(python3 -c 'import carbontrack; print(carbontrack.__version__)') .
# Build context: the repository root (see operator.Dockerfile.dockerignore).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build ----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# Extras to install; add mlflow for --mlflow-tracking-uri (docker build --build-arg EXTRAS=operator,mlflow).
ARG EXTRAS=operator
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
COPY exporter ./exporter
COPY operator ./operator
RUN python -m venv /opt/carbontrack \
 && /opt/carbontrack/bin/pip install --upgrade pip "setuptools>=68" wheel \
 && /opt/carbontrack/bin/pip install ".[${EXTRAS}]" \
 && /opt/carbontrack/bin/pip uninstall -y pip setuptools wheel \
 && /opt/carbontrack/bin/python -m carbontrack.sbom /opt/carbontrack/lib/python3.11/site-packages \
      --name carbontrack-operator --version "$(/opt/carbontrack/bin/python -c 'import carbontrack; print(carbontrack.__version__)')" \
      > /opt/carbontrack/sbom.cdx.json \
 && find /opt/carbontrack -name '__pycache__' -prune -exec rm -rf {} +

# ---- runtime --------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="carbontrack-operator" \
      org.opencontainers.image.description="Accounts finished Jobs' energy and CO2e, keeps CarbonBudgets" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/carbontrack /opt/carbontrack
ENV PATH=/opt/carbontrack/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Pod Security "restricted": a numeric non-root uid so runAsNonRoot can be
# verified by the kubelet; the chart uses the same uid.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["carbontrack"]
CMD ["operator", "--help"]

# syntax=docker/dockerfile:1
# CarbonTrack operator image (the chart's operator Deployment).
#   docker build -f docker/operator.Dockerfile -t ghcr.io/carbontrack/operator:$(python3 -c 'import carbontrack; print(carbontrack.__version__)') .
# Build context: the repository root (see operator.Dockerfile.dockerignore).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build ----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# The hash-locked requirements to install (docker/requirements-${LOCK}.lock). For the mlflow
# extra (--mlflow-tracking-uri): python scripts/lock.py operator-mlflow=operator,mlflow, then
# docker build --build-arg LOCK=operator-mlflow.
ARG LOCK=operator
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
COPY exporter ./exporter
COPY operator ./operator
COPY docker/requirements-*.lock ./docker/
# pip refuses any file whose hash is not in the lock; the project itself is built into a wheel from
# this context in a separate venv with locked build tools (none of them ship).
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r docker/requirements-build.lock \
 && /opt/build/bin/pip wheel --no-deps --no-build-isolation -w /tmp/dist . \
 && python -m venv /opt/carbontrack \
 && /opt/carbontrack/bin/pip install --require-hashes --no-deps -r "docker/requirements-${LOCK}.lock" \
 && /opt/carbontrack/bin/pip install --no-deps /tmp/dist/carbontrack-*.whl \
 && /opt/carbontrack/bin/pip uninstall -y pip setuptools \
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

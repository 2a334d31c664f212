# syntax=docker/dockerfile:1
# CarbonTrack node exporter image (the chart's exporter DaemonSet).
#   docker build -f docker/exporter.Dockerfile -t ghcr.io/carbontrack/exporter:$(python3 -c 'import carbontrack; print(carbontrack.__version__)') .
# Build context: the repository root. docker/exporter.Dockerfile.dockerignore
# keeps tests, docs and build output out of the context.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with the package and its exporter extra ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
COPY exporter ./exporter
COPY operator ./operator
COPY docker/requirements-build.lock docker/requirements-exporter.lock ./docker/
# Same base image and path in both stages, so the venv runs unchanged. Every distribution
# comes from a hash-locked file (scripts/lock.py): pip refuses any other file; the project
# itself is built into a wheel from this context in a separate venv with locked build tools.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r docker/requirements-build.lock \
 && /opt/build/bin/pip wheel --no-deps --no-build-isolation -w /tmp/dist . \
 && python -m venv /opt/carbontrack \
 && /opt/carbontrack/bin/pip install --require-hashes --no-deps -r docker/requirements-exporter.lock \
 && /opt/carbontrack/bin/pip install --no-deps /tmp/dist/carbontrack-*.whl \
 && /opt/carbontrack/bin/pip uninstall -y pip setuptools \
 && /opt/carbontrack/bin/python -m carbontrack.sbom /opt/carbontrack/lib/python3.11/site-packages \
      --name carbontrack-exporter --version "$(/opt/carbontrack/bin/python -c 'import carbontrack; print(carbontrack.__version__)')" \
      > /opt/carbontrack/sbom.cdx.json \
 && find /opt/carbontrack -name '__pycache__' -prune -exec rm -rf {} +

# ---- runtime: no compiler, no pip, no source tree -------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="carbontrack-exporter" \
      org.opencontainers.image.description="Per-container energy and CO2e as Prometheus metrics (RAPL, NVML, estimates)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/carbontrack /opt/carbontrack
ENV PATH=/opt/carbontrack/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Non-root by default (estimate-only nodes, tests). Reading RAPL energy_uj
# needs uid 0 (root-only since CVE-2020-8694): the Helm chart sets
# runAsUser: 0 with every capability dropped; see docs/helm.md.
USER 65534:65534
EXPOSE 9875
ENTRYPOINT ["carbontrack"]
CMD ["exporter", "--help"]

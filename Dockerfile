# syntax=docker/dockerfile:1
# Build: docker build -t ingestion-failure-exporter .
# Run:   docker run -p 9890:9890 -v "$PWD/config.yml:/etc/ingestion-failure-exporter/config.yml:ro" \
#          ingestion-failure-exporter
# The demo: docker run -p 9890:9890 ingestion-failure-exporter --demo --listen 0.0.0.0:9890

# Stage 1: a wheel of the exporter and of every dependency, built where pip and its caches are.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Stage 2: only the installed wheels, run as an unprivileged user.
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels /wheels/ingestion_failure_exporter-*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 65532 --no-create-home --shell /usr/sbin/nologin exporter
USER 65532
EXPOSE 9890
# /healthz answers 200 while the process lives (plain HTTP; with a TLS --web-config, probe from
# outside instead, as the Kubernetes manifests do).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9890/healthz', timeout=4)"]
ENTRYPOINT ["ingestion-failure-exporter"]
CMD ["--config", "/etc/ingestion-failure-exporter/config.yml"]

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install --no-cache-dir . && useradd --system --uid 65532 exporter
USER exporter
EXPOSE 9890
ENTRYPOINT ["ingestion-failure-exporter"]
CMD ["--config", "/etc/ingestion-failure-exporter/config.yml"]

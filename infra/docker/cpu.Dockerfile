# The pipeline image (CPU): light stages, Prefect process worker, CLI.
# Build from the repository root: docker build -f infra/docker/cpu.Dockerfile -t lerenet:$(git rev-parse --short HEAD) .
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true \
    PREFECT_SERVER_ANALYTICS_ENABLED=false DVC_NO_ANALYTICS=1 NO_ALBUMENTATIONS_UPDATE=1
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 lerenet
WORKDIR /opt/lerenet
COPY pyproject.toml constraints.txt README.md ./
COPY lerenet lerenet
COPY pipelines pipelines
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install -c constraints.txt ".[pretrained,export,postgres]"
USER lerenet
WORKDIR /home/lerenet/work
ENTRYPOINT ["lerenet"]

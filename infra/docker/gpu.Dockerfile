# The GPU training worker: CUDA torch, lerenet installed, non-root user.
# Build: docker build -f infra/docker/gpu.Dockerfile -t lerenet-gpu:$(git rev-parse --short HEAD) .
FROM nvidia/cuda:12.8.0-cudnn-runtime-ubuntu24.04
ENV PIP_NO_CACHE_DIR=1 DEBIAN_FRONTEND=noninteractive DO_NOT_TRACK=true \
    MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false DVC_NO_ANALYTICS=1 \
    NO_ALBUMENTATIONS_UPDATE=1
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv git \
 && rm -rf /var/lib/apt/lists/* && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN useradd --create-home --uid 10001 lerenet
WORKDIR /opt/lerenet
COPY pyproject.toml constraints.txt README.md ./
COPY lerenet lerenet
COPY pipelines pipelines
# CUDA build of torch first (the constraints pin the rest; torch is not in them)
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128 \
 && pip install -c constraints.txt ".[pretrained,export]"
USER lerenet
WORKDIR /home/lerenet/work
CMD ["prefect", "worker", "start", "--pool", "lerenet-gpu"]

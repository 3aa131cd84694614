# One image for every prunetune service (api, worker, scheduler, dashboard, Ray nodes).
# GPU hosts: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    PRUNETUNE_CACHE=/data/cache

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch first, from the index that matches the hardware, so the project's range is met
# without pulling a second build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md ./
COPY prunetune ./prunetune
COPY examples ./examples
RUN pip install .

RUN useradd --create-home --uid 1000 prunetune && mkdir -p /data && chown prunetune /data
USER prunetune
VOLUME ["/data"]
EXPOSE 8000 8080
CMD ["prunetune", "--help"]

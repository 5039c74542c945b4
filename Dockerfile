# xscore images, CPU (default) or NVIDIA GPU, chosen by the DEVICE build argument (BuildKit, the
# default builder since Docker 23, builds only the stages the chosen device needs):
#   docker build -t xscore .                              (DEVICE=cpu: python:3.11-slim)
#   docker run -p 8080:8080 -p 50051:50051 xscore
#   docker build --build-arg DEVICE=gpu -t xscore:gpu .   (CUDA 13 + cuDNN 9 runtime, Python 3.12)
#   docker run --gpus all -p 8080:8080 -p 50051:50051 xscore:gpu
#
# Stages: `build` is the serving install (no torch) in /opt/xscore; `export` fills the model cache
# (with the export install, torch and optimum, in /opt/export when MODELS asks for other models);
# the runtime copies the serving install and that cache, and runs as uid 10001.
#
# What is baked into /var/cache/xscore at build time:
# - the default model, exported by the serving install itself (it needs no torch), so its cache
#   entries carry the serving install's library versions and are reused as they are (an entry
#   built by the export install records torch and optimum in its key: rebuilt at the first start).
#   cpu: every CPU variant is built, gated and timed (`--variant auto`). gpu: fp32 only; fp16 is
#   built and gated on the GPU at the first start (its gate runs on the CUDA engine that serves it,
#   and `docker build` has no GPU), then `--variant auto` times fp16 against fp32 and remembers
#   the choice in the cache. A first start on another CPU class than the build machine's rebuilds
#   the lossy CPU variants (their gates hold per class; about two minutes on 2 cores of the AMX class).
# - other models, by the export install: --build-arg MODELS="name=org/model other=org/model2"
#   (cpu: int8 + fp32, gpu: fp32), their Hugging Face snapshots too (HF_HOME is in the cache, the
#   runtime is offline); serve them with -e XSCORE_MODEL=name=org/model,other=org/model2.
# Mount a volume at /var/cache/xscore to keep what the first start builds; a named volume starts as
# a copy of the baked cache, an empty bind mount does not (it must be writable by uid 10001).
ARG DEVICE=cpu

FROM python:3.11-slim AS base-cpu

FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 AS base-gpu
# CUDA 13 and cuDNN 9: what onnxruntime-gpu's PyPI wheels are built for (1.31: CUDA 13.0, cuDNN 9;
# the build stage checks it). Ubuntu 24.04's Python is 3.12 (xscore needs >= 3.11). DL3008 (pin
# apt versions) is ignored: python3 is the release's security-maintained package, and a pinned
# version would break the build at its next update.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

# base-${DEVICE} is one of the two stages above (DL3006 cannot resolve the argument)
# hadolint ignore=DL3006
FROM base-${DEVICE} AS build
ARG DEVICE
WORKDIR /src
COPY . .
# On gpu, the CUDA provider's libraries must all resolve in this image (libcuda.so.1 comes from the
# host driver at run time): a wheel built for another CUDA major would otherwise fall back to the
# CPU at run time with only a warning.
RUN python3 -m venv /opt/xscore && /opt/xscore/bin/pip install --no-cache-dir . \
 && if [ "$DEVICE" = gpu ] && ! { \
      find /opt/xscore -name libonnxruntime_providers_cuda.so -exec ldd {} + > /tmp/ldd.txt \
      && grep -q . /tmp/ldd.txt \
      && awk '/not found/ && !/libcuda[.]so/ {print "missing: " $1; bad = 1} END {exit bad}' /tmp/ldd.txt \
      && /opt/xscore/bin/python -c "import ctypes.util as u, sys; sys.exit(u.find_library('cudnn') != 'libcudnn.so.9')"; \
    }; then \
      echo "onnxruntime-gpu does not match this image's CUDA/cuDNN (see above)" >&2; exit 1; \
    fi

FROM build AS export
ARG DEVICE
ENV XSCORE_CACHE=/var/cache/xscore HF_HOME=/var/cache/xscore/huggingface HF_HUB_DISABLE_TELEMETRY=1
# The default model needs no torch: the serving install builds and gates its variants from the
# graph and reference logits it ships.
RUN if [ "$DEVICE" = gpu ]; then warm=fp32; else warm=auto; fi \
 && XSCORE_DEVICE=cpu XSCORE_VARIANT="$warm" /opt/xscore/bin/xscore --log-level WARNING \
      score --query "warm up" "the default model's cache" > /dev/null
# Other models are traced by the export install (torch, optimum), made only when MODELS names
# some; its torch comes from the CPU wheel index (tracing needs no CUDA, PyPI's torch pulls
# several GB of CUDA wheels).
ARG MODELS=""
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN if [ "$DEVICE" = gpu ]; then set -- --variant fp32; else set -- --variant int8 --variant fp32; fi \
 && if [ -n "$MODELS" ]; then \
      python3 -m venv /opt/export \
      && /opt/export/bin/pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" '.[export]' \
      && for spec in $MODELS; do /opt/export/bin/xscore export "${spec#*=}" "$@" || exit 1; done; \
    fi

# hadolint ignore=DL3006
FROM base-${DEVICE} AS runtime
RUN groupadd --gid 10001 xscore && useradd --create-home --uid 10001 --gid 10001 xscore \
 && mkdir -p /var/cache/xscore && chown 10001:10001 /var/cache/xscore
COPY --from=build /opt/xscore /opt/xscore
COPY --from=export --chown=10001:10001 /var/cache/xscore /var/cache/xscore
ENV PATH=/opt/xscore/bin:$PATH HF_HOME=/var/cache/xscore/huggingface HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 XSCORE_HOST=0.0.0.0 XSCORE_CACHE=/var/cache/xscore
USER 10001:10001
WORKDIR /home/xscore
VOLUME ["/var/cache/xscore"]
EXPOSE 50051 8080
# start period: a first start may build variants (fp16 on a GPU; all of them on another CPU class)
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s \
  CMD ["/opt/xscore/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('XSCORE_HTTP_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["xscore"]

FROM runtime AS runtime-cpu
CMD ["serve"]

# `--variant auto` on CUDA: fp16 and fp32 gated and timed at the first start, fp16 served where it
# passes its gate and is faster; fp32 where not (or for a baked model that fp16 would need torch for)
FROM runtime AS runtime-gpu
CMD ["serve", "--device", "cuda", "--variant", "auto"]

# the image: runtime-cpu or runtime-gpu (DL3006 cannot resolve the argument)
# hadolint ignore=DL3006
FROM runtime-${DEVICE}

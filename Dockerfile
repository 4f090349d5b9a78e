# epochflow worker image: one image for every role and for `epochflow init`.
#
#   docker build -t epochflow .
#   docker run --rm epochflow --help
#
# pyproject requires Python >= 3.11; every dependency ships binary wheels for 3.12
# (rocksdict, asyncpg, pydantic-core, ...), so nothing is compiled at build time.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what `pip install .` needs (pyproject names README.md as the readme), so the
# local .venv, .git and caches never reach the image.
COPY pyproject.toml README.md ./
COPY epochflow ./epochflow
# pip byte-compiles what it installs (the non-root workers could not write .pyc files
# into the root-owned /opt at run time), so workers start faster.
RUN python -m venv /opt/epochflow \
    && /opt/epochflow/bin/pip install .

FROM python:${PYTHON_VERSION}-slim
COPY --from=build /opt/epochflow /opt/epochflow
ENV PATH=/opt/epochflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EPOCHFLOW_DATA_DIR=/var/lib/epochflow
# RocksDB state lives under EPOCHFLOW_DATA_DIR, owned by the unprivileged user.
RUN groupadd --system --gid 10001 epochflow \
    && useradd --system --uid 10001 --gid epochflow --home-dir /var/lib/epochflow --no-create-home \
       --shell /usr/sbin/nologin epochflow \
    && mkdir -p /var/lib/epochflow \
    && chown epochflow:epochflow /var/lib/epochflow
USER epochflow
WORKDIR /var/lib/epochflow
# Faust web: /health/, /metrics/, /ingest/ and the read API (EPOCHFLOW_WEB_PORT).
EXPOSE 6066
ENTRYPOINT ["epochflow"]
CMD ["--help"]

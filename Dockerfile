# One image for every service and tool of the pipeline:
#
#   docker build -t card-installments .
#   docker run --rm card-installments run purchases      # any `installments` command
#
# The entrypoint is the `installments` CLI, so the command is its arguments
# (`run <service>`, `topics`, `migrate`, `lag exporter --port 9308`, `simulate`, ...).
# Configuration is environment only (README.md, "Configuration"). There is no
# HEALTHCHECK here: what "healthy" means depends on the role (a service answers
# /healthz on INSTALLMENTS_HTTP_PORT, the lag exporter on its own port, `topics` and
# `migrate` are one-shot), so docker-compose.yml defines one per service.

# PYTHON_IMAGE: any CPython 3.11-3.13 image with venv and pip, `python` on the PATH
# (scripts/docker.sh passes a local stand-in where python:3.11-slim cannot be pulled).
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when the
# dependencies change, not on every code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(deps))" > requirements.txt \
 && pip install -r requirements.txt

# Then the project itself (the three packages pyproject.toml installs).
COPY README.md ./
COPY schemas ./schemas
COPY shared ./shared
COPY services ./services
RUN pip install . \
 && installments --help > /dev/null

# ---------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="card-installments" \
      org.opencontainers.image.description="Event-driven credit-card installment pipeline (Kafka + PostgreSQL): services and tools"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 installments \
 && useradd --system --uid 10001 --gid installments --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin installments

COPY --from=build /opt/venv /opt/venv

# The working directory is the user's: the SQLite fallback (DATABASE_URL unset) writes
# .data/ here. With PostgreSQL nothing is written to disk.
WORKDIR /app
RUN chown installments:installments /app
USER 10001:10001

# 8000: a service's /healthz /readyz /metrics (when INSTALLMENTS_HTTP_PORT=8000);
# 9308: `installments lag exporter`.
EXPOSE 8000 9308

ENTRYPOINT ["installments"]
CMD ["--help"]

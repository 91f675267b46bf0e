# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build -t whatsapp-campaign-engine .                       the engine (default target)
#   docker build --target simulator -t whatsapp-campaign-engine-sim .  the Twilio simulator
# The engine image runs any of the four services and the CLI; the command picks one:
#   python -m services.segmenter | services.dispatcher | services.sender | services.tracker,
#   python -m shared.migrate (the migration job), wce ... (the operator CLI).
# The simulator (a test double) is never in the engine image.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a virtualenv with the project and its locked dependencies --------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/wce
# Dependencies from the lock file (exact versions, hashes checked), then the project on top
# without resolving anything again.
COPY requirements.lock ./
RUN /opt/wce/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY services ./services
COPY tools ./tools
COPY wce_cli ./wce_cli
RUN /opt/wce/bin/pip install --no-deps . \
 && site=/opt/wce/lib/python3.11/site-packages \
 && mkdir -p /opt/sim \
 && mv "$site/tools" /opt/sim/tools \
 && /opt/wce/bin/python -c "import shared, services, wce_cli" \
 && /opt/wce/bin/python -m compileall -q /opt/wce /opt/sim

# --- runtime base: no compilers, no pip cache, a numeric non-root user -------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="whatsapp-campaign-engine" \
      org.opencontainers.image.description="Multi-tenant WhatsApp campaign engine (RabbitMQ, PostgreSQL, Twilio)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/opt/wce/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WCE_HTTP_HOST=0.0.0.0
RUN groupadd --system --gid 10001 wce \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin wce
WORKDIR /app
COPY --from=build /opt/wce /opt/wce
# Numeric, so Kubernetes can verify runAsNonRoot without resolving a name.
USER 10001:10001

# --- the Twilio simulator (development and tests only) -----------------------------------------
FROM runtime AS simulator
COPY --from=build /opt/sim/tools /opt/wce/lib/python3.11/site-packages/tools
EXPOSE 8010
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8010/healthz', timeout=2)"]
CMD ["python", "-m", "tools.twilio_sim", "--host", "0.0.0.0", "--port", "8010"]

# --- the engine (default target) ---------------------------------------------------------------
FROM runtime AS engine
EXPOSE 8000 8001 8002 8003
# WCE_HEALTH_PORT names the port of the service the container runs (8000 segmenter, 8001
# tracker, 8002 dispatcher, 8003 sender).
ENV WCE_HEALTH_PORT=8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['WCE_HEALTH_PORT'], timeout=2)"]
CMD ["python", "-m", "services.segmenter"]

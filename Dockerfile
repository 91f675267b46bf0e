# One image, four services: the command picks the service
# (python -m services.segmenter | services.dispatcher | services.sender | services.tracker).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Dependencies from the lock file (exact versions, hashes checked), then the project without
# resolving anything again.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY services ./services
COPY tools ./tools
RUN pip install --no-deps . && useradd --system --uid 10001 wce
USER wce

EXPOSE 8000 8001 8002 8003
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import os,urllib.request;urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WCE_HEALTH_PORT','8000'))"
CMD ["python", "-m", "services.segmenter"]

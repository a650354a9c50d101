# One image, two processes (fly.toml [processes]): web (gunicorn) and worker (Huey consumer).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CONNECTOR_ENV=production DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY connector ./connector
RUN pip install ".[postgres]" && useradd --create-home --uid 1000 connector && mkdir -p /data \
    && chown connector /data
USER connector

EXPOSE 8000
# gunicorn reads `connector:create_app()` as an application factory.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "--timeout", "30", \
     "--access-logfile", "-", "connector:create_app()"]

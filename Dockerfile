# The Kastle image: control plane (web, worker, beat) and brokerd, one distribution.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app/platform:/app \
    DJANGO_SETTINGS_MODULE=controlplane.settings \
    KASTLE_VAR_DIR=/var/lib/kastle \
    STATIC_ROOT=/app/static

WORKDIR /app
COPY pyproject.toml README.md ./
COPY manage.py ./
COPY platform ./platform
COPY web ./web
COPY brokerd ./brokerd
RUN pip install --no-cache-dir . \
 && SECRET_KEY=build-only DEBUG=true python manage.py collectstatic --noinput \
 && useradd --system --home /var/lib/kastle --create-home kastle \
 && mkdir -p /var/lib/kastle && chown -R kastle /var/lib/kastle

USER kastle
EXPOSE 8000
CMD ["gunicorn", "controlplane.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "2"]

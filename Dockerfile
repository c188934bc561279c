# One image for web, worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CRM_VAR_DIR=/app/var STATIC_ROOT=/app/staticfiles
WORKDIR /app
RUN useradd --create-home --uid 1000 crm
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
# collectstatic needs settings only; a throwaway key is fine at build time.
RUN CRM_ENV=production ALLOWED_HOSTS=build SECRET_KEY=build-only-not-used-at-run-time-0123456789abcdefghijklmnop \
    python manage.py collectstatic --no-input -v0 \
    && mkdir -p /app/var && chown -R crm /app/var
USER crm
EXPOSE 8000
# Bind address, processes, threads and logs: gunicorn.conf.py.
CMD ["gunicorn", "crm.wsgi"]

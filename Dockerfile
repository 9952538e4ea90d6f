# One image for every process type (web, worker, beat, flower, migrate, sandbox); the command picks.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them (psycopg2-binary needs no compiler).
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Never run as root; var/ is where a SQLite database or the beat schedule may live.
RUN useradd --create-home --uid 10001 qpay && mkdir -p /app/var && chown qpay:qpay /app/var
USER qpay

EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "webhook:create_app()"]

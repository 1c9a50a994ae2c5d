# The chat web service: Daphne serving chatsite.asgi:application on port 8000.
# Run `python manage.py migrate` once per release (the compose file's `migrate`
# service does); configuration comes from the environment (docs/protocol.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=chatsite.settings

WORKDIR /app

# Dependencies first, the exact versions and hashes of the app's lock file
# (`make lock` compiles it from pyproject.toml): a code change reuses this layer.
COPY requirements/lock.txt requirements/lock.txt
RUN pip install --require-hashes -r requirements/lock.txt

COPY . .

# Static files go into the image; WhiteNoise serves them from every replica.
# This key exists only for this build step (settings refuse DEBUG=0 without one).
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=collectstatic-only-build-step-not-a-secret \
    python manage.py collectstatic --noinput

# Unprivileged at run time; /app itself writable for the SQLite fallback when
# no DATABASE_URL is given.
RUN useradd --system --uid 10001 --home-dir /app --no-create-home chat \
    && chown chat /app
USER chat

ENV DJANGO_DEBUG=0
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "deploy/healthcheck.py"]
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "chatsite.asgi:application"]

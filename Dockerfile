# EPMPulse container image. Build from the repository root:
#   docker build -t epmpulse .
# deploy/docker-compose.yml runs it with a data volume and the apps config.

# The build stage turns the source into a wheel, so no source tree or build files
# end up in the final image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed UID lets a bind-mounted data folder be given to the same user on the host.
RUN groupadd --system --gid 10001 epmpulse \
    && useradd --system --uid 10001 --gid epmpulse --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin epmpulse \
    && mkdir -p /data /app/config \
    && chown epmpulse:epmpulse /data \
    && chmod 0750 /data

COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels

# EPMPULSE_HOST=0.0.0.0 because the port is reached from outside the container.
# Publish it on 127.0.0.1 of the host only (see deploy/docker-compose.yml), with
# a TLS proxy in front.
ENV EPMPULSE_HOST=0.0.0.0 \
    EPMPULSE_PORT=18800 \
    EPMPULSE_DATA_DIR=/data

# apps.json is read from /app/config/apps.json, its default relative path.
WORKDIR /app
VOLUME ["/data"]
USER epmpulse
EXPOSE 18800

# Healthy only when /health returns 200: urlopen raises on 4xx and 5xx answers and
# on connection errors, and python then exits with 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('EPMPULSE_PORT', '18800'), timeout=4); sys.exit(0 if r.status == 200 else 1)"]

CMD ["epmpulse", "serve"]

# One image for the site (daphne, Celery) and the engine daemon (run privileged).
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv busybox-static \
       libseccomp2 iproute2 util-linux e2fsprogs debootstrap nodejs npm \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY pyproject.toml README.md ./
COPY runtime runtime
COPY playground playground
RUN python3 -m venv /opt/venv && pip install --no-cache-dir .
COPY manage.py ./
COPY templates templates
COPY static static
COPY scripts scripts
RUN python scripts/vendor_static.py && rm -rf node_modules

EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "playground.asgi:application"]

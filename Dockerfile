# customer-sync-exporter: Prometheus exporter for the FREESPORT customer sync with 1C.
#
#   docker build -t customer-sync-exporter \
#       --build-arg VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')" \
#       --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run -p 9188:9188 -v ./config.yaml:/etc/customer-sync-exporter/config.yaml:ro \
#       customer-sync-exporter
#
# VERSION and REVISION only fill the OCI labels; the version itself is the package's
# (pyproject.toml), and a build given a VERSION that differs from it fails. Without them the
# two labels are empty. Dependencies are installed at the versions pinned in constraints.txt.
#
# Works on the official python:3.11-slim image (/usr/local/bin/python3) and on Debian's python3
# (/usr/bin/python3, the local stand-in in scripts/container-setup.sh): only `python3 -m venv`
# and `python3 -m pip` are used, never a fixed interpreter path. Build with Podman using
# `--format docker`, or Podman drops the HEALTHCHECK (see docs/containers.md).
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml and the pins alone, so a code change reuses this layer.
COPY pyproject.toml constraints.txt ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && /opt/venv/bin/python3 -m pip install -r requirements.txt -c constraints.txt
COPY . .
# The package metadata names README.md; keep the build working in a tree that lacks it.
ARG VERSION=
RUN test -f README.md || echo "customer-sync-exporter" > README.md \
    && /opt/venv/bin/python3 -m pip install --no-deps . \
    && /opt/venv/bin/python3 -m pip uninstall -y pip setuptools \
    && /opt/venv/bin/customer-sync-exporter --version \
    && package="$(/opt/venv/bin/python3 -c 'import importlib.metadata as m; print(m.version("customer-sync-exporter"))')" \
    && { [ -z "$VERSION" ] || [ "$VERSION" = "$package" ] \
         || { echo "VERSION=$VERSION, but the package is version $package" >&2; exit 1; }; }

FROM ${PYTHON_IMAGE}
ARG VERSION=
ARG REVISION=
LABEL org.opencontainers.image.title="customer-sync-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the FREESPORT customer sync with 1C" \
      org.opencontainers.image.source="https://github.com/freesport/customer-sync-exporter" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN groupadd --gid 10001 exporter \
    && useradd --uid 10001 --gid exporter --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin exporter \
    && mkdir -p /etc/customer-sync-exporter
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_ADDRESS=127.0.0.1:9188
# The config file is mounted here (read-only); secrets it references come from the environment
# (${VAR}) or from *_file keys pointing at mounted secret files.
WORKDIR /etc/customer-sync-exporter
USER 10001:10001
EXPOSE 9188
# /health/live over https, then over http: the same check works with or without
# tls_server_config in --web.config.file (the certificate is not verified: the probe talks to
# its own process and sends nothing secret). No curl in slim images, so the venv's Python.
# HEALTHCHECK_ADDRESS follows a changed --web.listen-address.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, ssl, sys, urllib.request as r\nc = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE\nfor s in ('https', 'http'):\n try: r.urlopen(s + '://' + os.environ['HEALTHCHECK_ADDRESS'] + '/health/live', timeout=2, context=c); sys.exit(0)\n except OSError: pass\nsys.exit(1)"]
ENTRYPOINT ["customer-sync-exporter"]
CMD ["serve", "--config.file=/etc/customer-sync-exporter/config.yaml", "--web.listen-address=:9188"]

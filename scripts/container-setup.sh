#!/usr/bin/env bash
# Make Podman usable on a host with no Docker engine and no reachable container registry, then
# build local stand-ins for the base images our Dockerfile and docker-compose.yml name, tagged
# with those exact names so Podman finds them locally and never tries to pull.
#
# Idempotent: packages, the Podman drop-in and every image that already exists are left alone,
# so a second run takes about a second. Used by .ci/run and by the tests in tests/e2e.
#
#   scripts/container-setup.sh                 # everything (first run about 4 minutes)
#   scripts/container-setup.sh python redis    # only some stand-ins
#   CSE_REBUILD=1 scripts/container-setup.sh   # rebuild the stand-ins
#
# A real image with the same name (pulled on a machine that can reach a registry) is never
# replaced: stand-ins carry the label org.customer-sync-exporter.standin=true and only those
# are rebuilt. See docs/containers.md for what each stand-in provides and where it differs.
set -euo pipefail

MIRROR="${CSE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
BASE_IMAGE=localhost/customer-sync-exporter/debian-standin:bookworm
DROPIN=/etc/containers/containers.conf.d/50-customer-sync-exporter.conf
STANDIN_LABEL=org.customer-sync-exporter.standin=true

# The exact names used by Dockerfile and docker-compose.yml.
declare -A IMAGES=(
  [python]=docker.io/library/python:3.11-slim-bookworm
  [postgres]=docker.io/library/postgres:15-bookworm
  [redis]=docker.io/library/redis:7-bookworm
  [prometheus]=docker.io/prom/prometheus:v2.42.0
  [alertmanager]=docker.io/prom/alertmanager:v0.25.0
)
ORDER=(python postgres redis prometheus alertmanager)

log() { printf '[container-setup] %s\n' "$*" >&2; }

install_packages() {
  # netavark + aardvark-dns: service names resolve on a podman network (docker-compose.yml);
  # slirp4netns: a container reaches the host's loopback (tests/e2e/test_container.py).
  local wanted=(podman runc debootstrap docker-compose netavark aardvark-dns slirp4netns) missing=()
  local pkg
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

configure_podman() {
  # crun fails here on cgroups and on setrlimit(RLIMIT_NOFILE); systemd is not PID 1.
  local want
  want=$'# Written by scripts/container-setup.sh (customer-sync-exporter).\n[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\nevents_logger = "file"\n[network]\nnetwork_backend = "netavark"'
  if [[ ! -f $DROPIN ]] || [[ "$(cat "$DROPIN")" != "$want" ]]; then
    log "writing $DROPIN"
    mkdir -p "$(dirname "$DROPIN")"
    printf '%s\n' "$want" >"$DROPIN"
  fi
  local runtime
  runtime="$(podman info --format '{{.Host.OCIRuntime.Name}}/{{.Host.CgroupManager}}')"
  [[ $runtime == runc/cgroupfs ]] || { log "podman still uses $runtime"; exit 1; }
}

exists() { podman image exists "$1"; }

is_standin() {
  [[ "$(podman image inspect --format '{{index .Labels "org.customer-sync-exporter.standin"}}' "$1" 2>/dev/null)" == true ]]
}

build_base() {
  if exists "$BASE_IMAGE" && [[ -z ${CSE_REBUILD:-} ]]; then
    return
  fi
  local work
  work="$(mktemp -d /var/tmp/cse-debootstrap.XXXXXX)"
  log "debootstrap $SUITE from $MIRROR (about 75 s)"
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$work/rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # Without the host's bundle pip and apt inside builds cannot verify TLS behind this host's proxy.
  cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
  printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" \
    >"$work/rootfs/etc/apt/sources.list"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$work/rootfs/etc/apt/apt.conf.d/90-standin"
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
  podman import --change 'CMD ["bash"]' --change "LABEL $STANDIN_LABEL" \
    "$work/rootfs.tar" "$BASE_IMAGE" >"$work/import.log" 2>&1 || { cat "$work/import.log" >&2; exit 1; }
  rm -rf "$work"
  log "built $BASE_IMAGE"
}

# One Containerfile per stand-in, read from stdin by podman build. Each mirrors the interface
# of the official image that our files rely on (entrypoint, paths, user, env variables).
containerfile() {
  cat <<EOF
FROM $BASE_IMAGE
LABEL $STANDIN_LABEL
ENV DEBIAN_FRONTEND=noninteractive
EOF
  case "$1" in
  python) cat <<'EOF'
RUN apt-get update && apt-get install -y python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["python3"]
EOF
    ;;
  postgres) cat <<'EOF'
RUN apt-get update && apt-get install -y postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
# The subset of the official docker-entrypoint.sh that docker-compose.yml uses.
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
EOF
    ;;
  redis) cat <<'EOF'
RUN apt-get update && apt-get install -y redis-server \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
EOF
    ;;
  prometheus) cat <<'EOF'
RUN apt-get update && apt-get install -y prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
EOF
    ;;
  alertmanager) cat <<'EOF'
RUN apt-get update && apt-get install -y prometheus-alertmanager wget \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /usr/bin/prometheus-alertmanager /bin/alertmanager \
    && mkdir -p /alertmanager /etc/alertmanager && chown nobody:nogroup /alertmanager
USER nobody
WORKDIR /alertmanager
EXPOSE 9093
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
EOF
    ;;
  *) log "unknown stand-in $1"; exit 2 ;;
  esac
}

# The subset of the official postgres image's docker-entrypoint.sh that docker-compose.yml uses:
# POSTGRES_USER, POSTGRES_PASSWORD(_FILE), POSTGRES_DB and /docker-entrypoint-initdb.d/*.sql|*.sh,
# then postgres as the postgres user listening on every address with password auth.
postgres_entrypoint() {
  cat <<'SH'
#!/bin/bash
set -euo pipefail
if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" && chown -R postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_USER:=postgres}"
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then POSTGRES_PASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"; fi
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  pw="$(mktemp)"; printf '%s' "$POSTGRES_PASSWORD" > "$pw"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" \
    -w start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" -d postgres \
      -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sql) psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$POSTGRES_USER" \
               -d "$POSTGRES_DB" -f "$f" >/dev/null ;;
      *.sh) . "$f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL init process complete; ready for start up."
fi
if [ "${1:-}" = postgres ]; then
  shift
  exec postgres -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
fi
exec "$@"
SH
}

build_standin() {
  local key="$1" name="${IMAGES[$1]}"
  if exists "$name"; then
    if ! is_standin "$name"; then
      log "$name is a real image; keeping it"
      return
    fi
    [[ -z ${CSE_REBUILD:-} ]] && return
  fi
  build_base
  log "building stand-in $name"
  local ctx
  ctx="$(mktemp -d /var/tmp/cse-standin.XXXXXX)"
  containerfile "$key" >"$ctx/Containerfile"
  postgres_entrypoint >"$ctx/docker-entrypoint.sh"
  chmod 755 "$ctx/docker-entrypoint.sh"
  # --format docker keeps HEALTHCHECK/STOPSIGNAL metadata the OCI format drops.
  if ! podman build --network host --format docker -t "$name" "$ctx" >"$ctx/build.log" 2>&1; then
    tail -30 "$ctx/build.log" >&2
    exit 1
  fi
  rm -rf "$ctx"
}

main() {
  [[ $(id -u) == 0 ]] || { log "run as root (apt-get, /etc/containers)"; exit 1; }
  local wanted=("$@")
  ((${#wanted[@]})) || wanted=("${ORDER[@]}")
  for key in "${wanted[@]}"; do
    [[ -n ${IMAGES[$key]:-} ]] || { log "unknown image '$key' (known: ${ORDER[*]})"; exit 2; }
  done
  install_packages
  configure_podman
  for key in "${wanted[@]}"; do
    build_standin "$key"
  done
  for key in "${wanted[@]}"; do
    printf '%s\n' "${IMAGES[$key]}"
  done
}

main "$@"

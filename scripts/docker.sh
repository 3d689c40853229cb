#!/usr/bin/env bash
# The Docker path: docker-compose.yml's whole system, from a machine with nothing running.
#
#   bash scripts/docker.sh engine    # a Docker engine that answers (starts dockerd if none does)
#   bash scripts/docker.sh compose   # the `docker compose` plugin (built from the Go module proxy if missing)
#   bash scripts/docker.sh images    # the images compose needs; prints them as KEY=value lines
#   bash scripts/docker.sh story     # all of the above, then: compose up (every service ready on
#                                    # /readyz), a short simulated story through the containers,
#                                    # lag 0, `installments check` 0 violations, compose down -v
#   bash scripts/docker.sh down      # compose down -v (the project's containers and volumes)
#   bash scripts/docker.sh stop-engine  # stop the dockerd that `engine` started, if it did
#
# Images: the public ones (apache/kafka, postgres, python, prom/prometheus) are used where
# they can be pulled. Where they cannot (a closed network), local stand-ins are built
# from what is reachable: a Debian root filesystem made with debootstrap, the official
# Kafka jars from Maven Central, Debian's PostgreSQL and Prometheus, PyPI for the
# project. Each image is named by an environment variable (KAFKA_IMAGE, POSTGRES_IMAGE,
# PYTHON_IMAGE, PROMETHEUS_IMAGE); set one to use that image as it is.
# Slow things are cached outside the clone, in INSTALLMENTS_DOCKER_CACHE
# (default ~/.cache/card-installments/docker): the root filesystem, the jars, the compose
# plugin. An engine this script started is stopped again when `story` ends.
#
# Safe to run as a plain command only (it sets shell options); not meant to be sourced.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${INSTALLMENTS_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/card-installments/docker}
KAFKA_VERSION=${INSTALLMENTS_DOCKER_KAFKA_VERSION:-4.1.2}
COMPOSE_VERSION=${INSTALLMENTS_DOCKER_COMPOSE_VERSION:-v5.6.0}
BASE_IMAGE=card-installments/base:bookworm
PROJECT=${COMPOSE_PROJECT_NAME:-card-installments}
export COMPOSE_PROJECT_NAME=$PROJECT
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
STARTED_ENGINE=""

say() { echo "docker: $*" >&2; }
die() { say "error: $*"; exit 1; }

apt_install() {
  say "installing $* (Debian packages)"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# ------------------------------------------------------------------ the engine
engine() {
  if docker info >/dev/null 2>&1; then return 0; fi
  command -v dockerd >/dev/null || apt_install docker.io
  command -v docker >/dev/null || die "no docker client after installing docker.io"
  if docker info >/dev/null 2>&1; then return 0; fi  # the package's own start answered
  mkdir -p "$CACHE"
  say "starting dockerd (log: $CACHE/dockerd.log)"
  $SUDO sh -c "nohup dockerd > '$CACHE/dockerd.log' 2>&1 & echo \$! > '$CACHE/dockerd.pid'"
  STARTED_ENGINE=$(cat "$CACHE/dockerd.pid")
  echo "$STARTED_ENGINE" > "$CACHE/dockerd.started-by-us"  # for `stop-engine`
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { say "engine up (dockerd pid $STARTED_ENGINE)"; return 0; }
    sleep 1
  done
  tail -20 "$CACHE/dockerd.log" >&2 || true
  die "dockerd did not answer within 60 s"
}

stop_engine() {
  [ -n "$STARTED_ENGINE" ] || return 0
  rm -f "$CACHE/dockerd.started-by-us"
  say "stopping the dockerd this script started (pid $STARTED_ENGINE)"
  $SUDO kill -TERM "$STARTED_ENGINE" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$STARTED_ENGINE" 2>/dev/null || return 0; sleep 1; done
}

# ------------------------------------------------------- the compose v2+ plugin
compose_plugin() {
  if docker compose version >/dev/null 2>&1; then return 0; fi
  local plugin="$CACHE/cli-plugins/docker-compose"
  if [ ! -x "$plugin" ]; then
    command -v go >/dev/null || die "docker compose is missing and Go is not installed to build it"
    say "building docker compose $COMPOSE_VERSION from the Go module proxy (once; cached in $CACHE)"
    local src
    src=$(go mod download -json "github.com/docker/compose/v5@$COMPOSE_VERSION" \
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    local work="$CACHE/compose-src"
    mkdir -p "$CACHE"
    rm -rf "$work"; cp -r "$src" "$work"; chmod -R u+w "$work"
    mkdir -p "$(dirname "$plugin")"
    (cd "$work" && CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
        -o "$plugin.tmp" ./cmd)
    mv "$plugin.tmp" "$plugin"
    rm -rf "$work"
  fi
  # The docker CLI finds plugins in ~/.docker/cli-plugins (or $DOCKER_CONFIG/cli-plugins).
  local dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mkdir -p "$dir"
  ln -sf "$plugin" "$dir/docker-compose"
  docker compose version >/dev/null || die "docker compose does not run ($plugin)"
}

# ------------------------------------------------------------------ the images
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

pullable() {  # the public image, when this machine can pull it (bounded wait)
  have_image "$1" && return 0
  timeout 120 docker pull -q "$1" >/dev/null 2>&1
}

base_image() {
  have_image "$BASE_IMAGE" && return 0
  local tarball="$CACHE/rootfs-bookworm.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || apt_install debootstrap
    local root="$CACHE/rootfs.tmp"
    $SUDO rm -rf "$root"
    say "debootstrap: a Debian bookworm root filesystem (once, a few minutes; cached in $CACHE)"
    # What the stand-ins need, in one root filesystem: CPython (project image), Java
    # (Kafka), PostgreSQL, Prometheus; wget/curl for health checks.
    $SUDO debootstrap --variant=minbase \
      --include=python3,python3-venv,python3-pip,openjdk-17-jre-headless,postgresql-15,postgresql-client-15,prometheus,ca-certificates,procps,curl,wget,passwd \
      bookworm "$root" "${INSTALLMENTS_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    $SUDO rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    $SUDO tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    $SUDO rm -rf "$root"
  fi
  say "importing the root filesystem as $BASE_IMAGE"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    "$tarball" "$BASE_IMAGE" >/dev/null
}

kafka_libs() {  # the official jars (broker + tools), resolved with Maven once
  local libs="$CACHE/kafka-$KAFKA_VERSION-libs"
  if [ ! -f "$libs/.complete" ]; then
    say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central (once)"
    rm -rf "$libs.tmp"
    mvn -q -B -f deploy/images/kafka/pom.xml \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime -DoutputDirectory="$libs.tmp" >&2
    touch "$libs.tmp/.complete"; rm -rf "$libs"; mv "$libs.tmp" "$libs"
  fi
  echo "$libs"
}

standin() {  # standin NAME TAG: build deploy/images/NAME as TAG
  local name=$1 tag=$2 ctx
  have_image "$tag" && return 0
  base_image
  ctx=$(mktemp -d)
  cp -r "deploy/images/$name/." "$ctx/"
  if [ "$name" = kafka ]; then cp -r "$(kafka_libs)" "$ctx/libs"; rm -f "$ctx/libs/.complete"; fi
  if [ "$name" = python ]; then  # the machine's own CAs (a proxy's), for pip inside builds
    mkdir -p "$ctx/extra-ca"
    cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/" 2>/dev/null || true
  fi
  say "building the local stand-in $tag"
  DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag" "$ctx" \
    >"$CACHE/build-$name.log" 2>&1 || { cat "$CACHE/build-$name.log" >&2; die "building $tag failed"; }
  rm -rf "$ctx"
}

choose() {  # choose VAR PUBLIC NAME STANDIN_TAG: the image VAR names (public or stand-in)
  local var=$1 public=$2 name=$3 tag=$4
  if [ -n "${!var:-}" ]; then
    have_image "${!var}" || pullable "${!var}" || die "$var=${!var} can neither be found nor pulled"
    return 0
  fi
  if pullable "$public"; then
    printf -v "$var" '%s' "$public"
  else
    say "$public cannot be pulled here: using a local stand-in"
    standin "$name" "$tag"
    printf -v "$var" '%s' "$tag"
  fi
  export "${var?}"
}

images() {
  mkdir -p "$CACHE"
  choose KAFKA_IMAGE "apache/kafka:$KAFKA_VERSION" kafka "card-installments/kafka-standin:$KAFKA_VERSION"
  choose POSTGRES_IMAGE postgres:16 postgres card-installments/postgres-standin:15
  choose PYTHON_IMAGE python:3.11-slim python card-installments/python-standin:3.11
  choose PROMETHEUS_IMAGE prom/prometheus:v2.55.1 prometheus card-installments/prometheus-standin:2.42
  export KAFKA_IMAGE POSTGRES_IMAGE PYTHON_IMAGE PROMETHEUS_IMAGE
  for var in KAFKA_IMAGE POSTGRES_IMAGE PYTHON_IMAGE PROMETHEUS_IMAGE; do echo "$var=${!var}"; done
}

# ------------------------------------------------------------------- the story
# Grafana has no stand-in (no Debian package): it is started only where its image can be
# pulled. Everything else of docker-compose.yml runs.
SERVICES=(kafka postgres init purchases offers points reminders collections lag-exporter collections-console prometheus)

compose() { docker compose "$@"; }

story() {
  engine
  trap 'status=$?; down || true; stop_engine; exit $status' EXIT
  compose_plugin
  images >/dev/null
  local services=("${SERVICES[@]}")
  if pullable "${GRAFANA_IMAGE:-grafana/grafana:11.4.0}"; then services+=(grafana); else
    say "grafana/grafana cannot be pulled here: the system runs without Grafana"; fi
  local started=$SECONDS
  say "building the project image (on $PYTHON_IMAGE)"
  compose build --quiet
  say "compose up: ${services[*]} (waiting for every health check: services on /readyz)"
  compose up -d --wait --wait-timeout 300 "${services[@]}" \
    || { compose ps -a >&2; compose logs --tail 40 >&2; die "compose up did not become healthy"; }
  say "up and ready in $((SECONDS - started)) s"
  compose ps --format 'table {{.Service}}\t{{.Status}}' >&2

  say "the story: ${SIM_ACCOUNTS:=60} accounts over ${SIM_DAYS:=8} business days"
  SIM_ACCOUNTS=$SIM_ACCOUNTS SIM_DAYS=$SIM_DAYS compose --profile simulator run --rm --no-deps simulator

  say "lag of every pipeline group (must be 0)"
  local lag
  lag=$(compose run --rm --no-deps -T lag-exporter lag --json)
  echo "$lag" | python3 -c '
import json, sys
total = 0
for group in json.load(sys.stdin):
    print("  %s: lag %s, %s" % (group["group"], group["lag"], group["status"]), file=sys.stderr)
    total += max(int(group["lag"]), 0)
sys.exit("docker: lag is %d, not 0" % total if total else 0)
' || die "the pipeline did not drain"

  say "invariants (installments check)"
  compose run --rm --no-deps -T lag-exporter check

  say "Prometheus: alert rules loaded, every target up"
  compose exec -T prometheus wget -q -O - http://localhost:9090/api/v1/rules | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = sum(len(g["rules"]) for g in groups)
print(f"  {rules} rules in {len(groups)} groups", file=sys.stderr)
sys.exit(0 if rules else "docker: Prometheus loaded no alert rules")'
  # Health is refreshed at each scrape (15 s): a target busy at its last scrape gets a
  # minute to answer again; the last error of one still down is printed.
  local attempt
  for attempt in 1 2 3 4 5 6 7; do
    if compose exec -T prometheus wget -q -O - http://localhost:9090/api/v1/targets | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
down = [t for t in targets if t["health"] != "up"]
print("  %d targets scraped, %d not up" % (len(targets), len(down)), file=sys.stderr)
for t in down:
    print("    not up: %s %s: %s" % (t["labels"].get("job", "?"), t["scrapeUrl"], t.get("lastError")), file=sys.stderr)
sys.exit(1 if down or not targets else 0)'; then break; fi
    [ "$attempt" -lt 7 ] || die "a Prometheus target is not up"
    sleep 10
  done

  say "no container restarted (a crash would have been restarted by compose)"
  local restarts
  restarts=$(docker inspect -f '{{.Name}} {{.RestartCount}}' $(compose ps -q) | awk '$2 > 0')
  [ -z "$restarts" ] || die "restarted containers: $restarts"
  say "story done in $((SECONDS - started)) s"
}

down() { docker compose --profile simulator down -v --remove-orphans >/dev/null 2>&1; }

case "${1:-story}" in
  engine) engine ;;
  compose) engine; compose_plugin ;;
  images) engine; images ;;
  story) story ;;
  down) down ;;
  stop-engine)  # stop the dockerd that `engine` started (nothing when the engine was already up)
    STARTED_ENGINE=$(cat "$CACHE/dockerd.started-by-us" 2>/dev/null || true); stop_engine ;;
  *) die "unknown command ${1} (engine | compose | images | story | down | stop-engine)" ;;
esac

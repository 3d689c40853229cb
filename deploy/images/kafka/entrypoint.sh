#!/bin/bash
# The stand-in's entrypoint: KAFKA_* environment -> server.properties, format the KRaft
# storage once with CLUSTER_ID, then run the broker in the foreground (PID 1 is java, so
# `docker stop`'s SIGTERM shuts the broker down cleanly).
set -euo pipefail
props=/opt/kafka/config/server.properties
: > "$props"
for var in $(compgen -e); do
  case "$var" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS|KAFKA_GC_LOG_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=$(printf '%s' "${var#KAFKA_}" | tr '[:upper:]' '[:lower:]' \
        | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
  printf '%s=%s\n' "$key" "${!var}" >> "$props"
done
log_dirs=$(sed -n 's/^log\.dirs=//p' "$props")
if [ -z "$log_dirs" ]; then
  log_dirs=/var/lib/kafka/data
  echo "log.dirs=$log_dirs" >> "$props"
fi
first_dir=${log_dirs%%,*}
if [ ! -f "$first_dir/meta.properties" ]; then
  : "${CLUSTER_ID:?CLUSTER_ID is needed to format the storage (as with the official image)}"
  kafka-run-class.sh kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$props" --ignore-formatted
fi
exec kafka-run-class.sh kafka.Kafka "$props"

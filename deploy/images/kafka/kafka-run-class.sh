#!/bin/bash
# Run one Kafka class on the image's jars (the official image's script of the same name).
exec java ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.xml ${KAFKA_OPTS:-} \
  -cp "/opt/kafka/libs/*" "$@"

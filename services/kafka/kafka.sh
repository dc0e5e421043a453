#!/usr/bin/env bash
# Local Apache Kafka 4.x broker (KRaft combined mode, one node) for development, tests and `make run`.
#
#   services/kafka/kafka.sh fetch            resolve the broker jars from Maven Central (cached)
#   services/kafka/kafka.sh start            start a broker in the background, wait until it answers
#   services/kafka/kafka.sh stop             stop the broker this script started (by its PID)
#   services/kafka/kafka.sh status           exit 0 when the broker answers
#   services/kafka/kafka.sh run CMD [ARG..]  start a broker, run CMD, stop the broker on any exit
#
# Environment: KAFKA_PORT (default 9092), KAFKA_HOME (default .cache/kafka under the repo),
# KAFKA_WAIT_SECONDS (default 90), KAFKA_FRESH=1 (start from empty storage: what tests want).
# Every port gets its own data and PID file, so a test broker and a `make run` broker can live
# side by side.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-9092}"
controller_port=$((port + 1))
home="${KAFKA_HOME:-$repo/.cache/kafka}"
lib="$home/lib"
state="$home/broker-$port"
pidfile="$state/kafka.pid"
logfile="$state/kafka.log"
wait_seconds="${KAFKA_WAIT_SECONDS:-90}"

die() { echo "kafka.sh: $*" >&2; exit 1; }

need_java() {
  command -v java >/dev/null 2>&1 || die "Java is missing: install a JDK 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
  local major
  major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  [ -n "$major" ] && [ "$major" -ge 17 ] || die "Kafka 4.x needs Java 17 or newer; found: $(java -version 2>&1 | head -n1)"
}

fetch() {
  if [ -f "$lib/.complete" ] && [ "$lib/.complete" -nt "$here/pom.xml" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "Maven is missing: it fetches the Kafka jars (Debian: apt-get install maven)"
  need_java
  echo "kafka.sh: resolving the Kafka broker jars from Maven Central into $lib" >&2
  rm -rf "$lib"
  mkdir -p "$lib"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$lib" -DincludeScope=runtime >&2 \
    || die "Maven could not resolve the Kafka jars (see the output above)"
  touch "$lib/.complete"
}

# Answers when the broker accepts a Kafka ApiVersions request, not merely a TCP connection.
answers() {
  java -cp "$lib/*" org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "127.0.0.1:$port" >/dev/null 2>&1
}

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

write_config() {
  mkdir -p "$state/data"
  cat >"$state/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$state/data
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=4194304
log.retention.hours=24
EOF
}

start() {
  fetch
  need_java
  if pid="$(running_pid)"; then
    echo "kafka.sh: a broker started by this script already runs on 127.0.0.1:$port (PID $pid)" >&2
    return 0
  fi
  if answers; then
    die "something else already answers on 127.0.0.1:$port; set KAFKA_PORT to another port"
  fi
  local cluster_id_file="$state/cluster.id"
  if [ "${KAFKA_FRESH:-0}" = 1 ]; then
    rm -rf "$state/data" "$cluster_id_file"
  fi
  write_config
  # A cluster id is 16 random bytes in URL-safe base64, as Kafka's own Uuid.randomUuid makes
  # them, and like it never one that starts with "-", which a command line takes for an option.
  [ -s "$cluster_id_file" ] || python3 -c '
import base64, uuid
while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
    pass
print(cid)' >"$cluster_id_file"
  local log4j="$here/log4j2.yaml"
  java -cp "$lib/*" -Dlog4j2.configurationFile="$log4j" \
    kafka.tools.StorageTool format --cluster-id="$(cat "$cluster_id_file")" \
    -c "$state/server.properties" --ignore-formatted >"$state/format.log" 2>&1 \
    || die "formatting the KRaft storage failed (see $state/format.log)"
  # -Xmx1g is plenty for a single-node test broker; the G1 defaults keep pauses short.
  # setsid: Ctrl-C in the terminal must not reach the broker before the workers have committed;
  # `run` stops it after the command has exited.
  nohup setsid java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$log4j" -Dkafka.logs.dir="$state" \
    -cp "$lib/*" kafka.Kafka "$state/server.properties" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  local waited=0
  until answers; do
    if ! running_pid >/dev/null; then
      tail -n 30 "$logfile" >&2 || true
      die "the broker exited during start-up (log: $logfile)"
    fi
    [ "$waited" -lt "$wait_seconds" ] || { stop; die "the broker did not answer within ${wait_seconds}s (log: $logfile)"; }
    sleep 1
    waited=$((waited + 1))
  done
  echo "kafka.sh: broker answers on 127.0.0.1:$port (PID $(cat "$pidfile"), log $logfile)" >&2
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "kafka.sh: broker on 127.0.0.1:$port stopped (PID $pid)" >&2
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) fetch >/dev/null && answers ;;
  run)
    shift
    [ $# -gt 0 ] || die "usage: kafka.sh run CMD [ARG...]"
    started=0
    if running_pid >/dev/null; then
      echo "kafka.sh: reusing the broker already started on 127.0.0.1:$port" >&2
    else
      start
      started=1
    fi
    cleanup() { [ "$started" = 1 ] && stop; }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    set +e
    "$@"
    rc=$?
    set -e
    exit "$rc"
    ;;
  *) echo "usage: $0 {fetch|start|stop|status|run CMD...}" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Local single-node Apache Kafka 4.1 (KRaft, broker+controller in one JVM) on
# loopback, without Docker: jars come from Maven Central via deploy/kafka/pom.xml.
# A missing JDK or Maven is installed with apt-get when running as root.
#
#   deploy/scripts/kafka.sh up|down|kill|status|wipe
#   deploy/scripts/kafka.sh run-class CLASS [ARGS...]   # e.g. org.apache.kafka.tools.TopicCommand --list ...
#
# Environment:
#   REBOUND_STATE            state root (default: <repo>/.state); Kafka uses $REBOUND_STATE/kafka
#   KAFKA_PORT               client listener port (default 19092)
#   KAFKA_CONTROLLER_PORT    KRaft controller port (default 19093)
#   KAFKA_SASL_PORT          SASL_PLAINTEXT listener, SCRAM-SHA-512 (default 19094)
#   KAFKA_SSL_PORT           SASL_SSL listener, SCRAM-SHA-512 over TLS (default 19095; only
#                            when openssl is installed)
#   KAFKA_HEAP_OPTS          JVM heap flags (default "-Xms256m -Xmx1g")
#   KAFKA_READY_TIMEOUT      seconds to wait for the broker on `up` (default 60)
#   KAFKA_BOOTSTRAP_SERVERS  if set to anything but the local address, an external
#                            broker is used and this script does nothing
#
# The SASL listeners know one SCRAM-SHA-512 user, `rebound`, whose password is generated once into
# $REBOUND_STATE/kafka/sasl-password (mode 600). For the SASL_SSL listener a throwaway CA and a
# broker certificate for 127.0.0.1 are generated once into $REBOUND_STATE/kafka/tls (clients
# trust tls/ca.pem). The PLAINTEXT listener stays open to everyone.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$REPO_ROOT/deploy/kafka/pom.xml"
LOG4J_BROKER="$REPO_ROOT/deploy/kafka/log4j2-broker.xml"
LOG4J_TOOLS="$REPO_ROOT/deploy/kafka/log4j2-tools.xml"

STATE_ROOT="${REBOUND_STATE:-$REPO_ROOT/.state}"
KDIR="$STATE_ROOT/kafka"
LIBS="$KDIR/libs"
DATA="$KDIR/data"
LOG="$KDIR/kafka.log"
PIDFILE="$KDIR/kafka.pid"
PROPS="$KDIR/server.properties"
CLUSTER_ID_FILE="$KDIR/cluster.id"
POM_HASH_FILE="$LIBS/.pom.sha256"
SASL_USER=rebound
SASL_PASSWORD_FILE="$KDIR/sasl-password"
# Which cluster id and password the SCRAM user was last created for (created again when either changes).
SCRAM_MARKER="$KDIR/.scram-user"
TLS_DIR="$KDIR/tls"

HOST=127.0.0.1
PORT="${KAFKA_PORT:-19092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
SASL_PORT="${KAFKA_SASL_PORT:-19094}"
SSL_PORT="${KAFKA_SSL_PORT:-19095}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-60}"
LOCAL_BOOTSTRAP="$HOST:$PORT"

die() { echo "kafka: $*" >&2; exit 1; }

# Display paths relative to the repo when possible (shorter error lines).
rel() { local p="$1"; [[ "$p" == "$REPO_ROOT/"* ]] && p="${p#"$REPO_ROOT"/}"; echo "$p"; }

external_broker() {
  # The local default itself is not "external": only a different value is.
  [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" && "$KAFKA_BOOTSTRAP_SERVERS" != "$LOCAL_BOOTSTRAP" ]]
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# PID of our broker if it is alive (checks the cmdline so a recycled PID is never trusted).
running_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $PROPS" || return 1
  echo "$pid"
}

APT_LOG=/tmp/rebound-kafka-apt.log

# Install Debian packages when a tool is missing and this is root on a Debian-like system, unless
# REBOUND_NO_APT is set.
apt_install() {
  [[ -z "${REBOUND_NO_APT:-}" ]] && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" -eq 0 ]] || return 1
  echo "kafka: installing $* with apt-get ..."
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; } \
    >"$APT_LOG" 2>&1
}

require_java() {
  command -v java >/dev/null 2>&1 || apt_install default-jdk-headless \
    || die "java not found and not installable here (see $APT_LOG; install a JDK 17+, e.g. openjdk-17-jdk-headless)"
  local major
  major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  [[ -n "$major" && "$major" -ge 17 ]] || die "java ${major:-?} found, Kafka 4.1 needs JDK 17+"
}

fetch_jars() {
  local want
  want="$(sha256sum "$POM" | cut -d' ' -f1)"
  if [[ -f "$POM_HASH_FILE" && "$(cat "$POM_HASH_FILE")" == "$want" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven \
    || die "mvn not found and not installable here (see $APT_LOG; install Maven 3.6+, e.g. apt-get install -y maven)"
  echo "kafka: fetching jars with Maven into $(rel "$LIBS") ..."
  # Fetch into a temp dir and swap, so a failed/partial fetch never leaves a mixed classpath.
  local tmp="$KDIR/libs.tmp"
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" >"$KDIR/mvn.log" 2>&1; then
    die "maven could not fetch the Kafka jars, see $(rel "$KDIR/mvn.log")"
  fi
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  echo "$want" >"$POM_HASH_FILE"
}

# Run a Kafka CLI class from the jars, with quiet tool logging.
run_class() {
  java -Xmx512m -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS/*" "$@"
}

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Created once; hex only, so it needs no quoting in the SCRAM config syntax.
ensure_sasl_password() {
  [[ -s "$SASL_PASSWORD_FILE" ]] && return 0
  (umask 077 && random_hex 24 >"$SASL_PASSWORD_FILE.tmp") && mv "$SASL_PASSWORD_FILE.tmp" "$SASL_PASSWORD_FILE"
}

scram_marker_value() {
  printf '%s:%s:%s' "$(cat "$CLUSTER_ID_FILE")" "$SASL_USER" "$(cat "$SASL_PASSWORD_FILE")" | sha256sum | cut -d' ' -f1
}

have_tls() { [[ -s "$TLS_DIR/broker.p12" && -s "$TLS_DIR/keystore-password" && -s "$TLS_DIR/ca.pem" ]]; }

# A throwaway CA and a broker certificate for 127.0.0.1 (PKCS12 keystore), created once.
ensure_tls() {
  have_tls && return 0
  if ! command -v openssl >/dev/null 2>&1; then
    echo "kafka: openssl not found, starting without the SASL_SSL listener" >&2
    return 0
  fi
  local tmp="$TLS_DIR.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  chmod 700 "$tmp"
  (
    set -e
    cd "$tmp"
    random_hex 24 >keystore-password
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Rebound local CA" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$HOST" -keyout broker.key -out broker.csr
    printf 'subjectAltName=IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth\n' "$HOST" >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile broker.ext -out broker.pem
    openssl pkcs12 -export -name broker -inkey broker.key -in broker.pem -certfile ca.pem \
      -passout "file:keystore-password" -out broker.p12
    rm -f broker.csr broker.ext ca.srl
    chmod 600 ./*
    chmod 644 ca.pem
  ) >"$KDIR/tls.log" 2>&1 || die "could not create the TLS certificates, see $(rel "$KDIR/tls.log")"
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
}

write_props() {
  local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT,SASL://$HOST:$SASL_PORT"
  local advertised="PLAINTEXT://$HOST:$PORT,SASL://$HOST:$SASL_PORT"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT"
  if have_tls; then
    listeners+=",SASL_SSL://$HOST:$SSL_PORT"
    advertised+=",SASL_SSL://$HOST:$SSL_PORT"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  : >"$PROPS" && chmod 600 "$PROPS"   # it holds the local keystore password
  cat >"$PROPS" <<EOF
# Generated by deploy/scripts/kafka.sh on every 'up' -- edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA

# SCRAM-SHA-512 on the SASL listeners; users live in the KRaft metadata (user $SASL_USER).
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
  if have_tls; then
    cat >>"$PROPS" <<EOF
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$(cat "$TLS_DIR/keystore-password")
EOF
  fi
  cat >>"$PROPS" <<EOF

num.partitions=6
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# A restarted (or crashed) single node re-registers sooner: fault tests restart it often.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=1000
message.max.bytes=2097152
# Abort hung transactions quickly so crashed test producers don't block consumers for long.
transaction.abort.timed.out.transaction.cleanup.interval.ms=10000
EOF
}

format_storage() {
  [[ -f "$DATA/meta.properties" ]] && return 0
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    run_class kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE" \
      || die "could not generate a cluster id (kafka.tools.StorageTool random-uuid)"
  fi
  echo "kafka: formatting storage in $(rel "$DATA") (cluster id $(cat "$CLUSTER_ID_FILE"))"
  run_class kafka.tools.StorageTool format --ignore-formatted \
      -t "$(cat "$CLUSTER_ID_FILE")" -c "$PROPS" \
      --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$(cat "$SASL_PASSWORD_FILE")]" \
      >"$KDIR/format.log" 2>&1 \
    || die "storage format failed, see $(rel "$KDIR/format.log")"
  scram_marker_value >"$SCRAM_MARKER"
}

# Storage formatted before the SASL listener existed (or a new password): create the user on the
# running broker. Idempotent; skipped while the marker matches, so restarts stay fast.
ensure_scram_user() {
  [[ -f "$SCRAM_MARKER" && "$(cat "$SCRAM_MARKER")" == "$(scram_marker_value)" ]] && return 0
  run_class kafka.admin.ConfigCommand --bootstrap-server "$LOCAL_BOOTSTRAP" --alter \
      --add-config "SCRAM-SHA-512=[password=$(cat "$SASL_PASSWORD_FILE")]" \
      --entity-type users --entity-name "$SASL_USER" >"$KDIR/scram.log" 2>&1 \
    || die "could not create the SCRAM user $SASL_USER, see $(rel "$KDIR/scram.log")"
  scram_marker_value >"$SCRAM_MARKER"
  echo "kafka: SCRAM-SHA-512 user $SASL_USER created (password in $(rel "$SASL_PASSWORD_FILE"))"
}

# Ready = port answers, the broker logged that startup finished (it waits to be
# unfenced before logging it), and a real metadata round-trip lists broker id 1.
wait_ready() {
  local pid="$1" deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || die "broker exited during startup, see $(rel "$LOG")"
    if port_open "$PORT" && grep -q "Kafka Server started" "$LOG" 2>/dev/null; then
      if timeout 20 java -Xmx256m -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS/*" \
           org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$LOCAL_BOOTSTRAP" 2>/dev/null \
           | grep -q "(id: 1 "; then
        return 0
      fi
    fi
    sleep 0.3
  done
  die "broker did not become ready in ${READY_TIMEOUT}s (pid $pid left running; 'kafka.sh down' stops it), see $(rel "$LOG")"
}

cmd_up() {
  if external_broker; then
    echo "kafka: KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS is set, using the external broker (nothing started)"
    return 0
  fi
  local pid
  if pid="$(running_pid)"; then
    if port_open "$PORT"; then
      echo "kafka: already running on $LOCAL_BOOTSTRAP (pid $pid)"
      return 0
    fi
    # Alive but not listening yet: probably another 'up' is still starting it.
    wait_ready "$pid"
    echo "kafka: ready on $LOCAL_BOOTSTRAP (pid $pid)"
    return 0
  fi
  rm -f "$PIDFILE"
  port_open "$PORT" && die "port $PORT is already in use by another process (set KAFKA_PORT or stop it)"
  port_open "$CONTROLLER_PORT" && die "controller port $CONTROLLER_PORT is already in use by another process (set KAFKA_CONTROLLER_PORT or stop it)"
  port_open "$SASL_PORT" && die "SASL port $SASL_PORT is already in use by another process (set KAFKA_SASL_PORT or stop it)"

  require_java
  mkdir -p "$KDIR" "$DATA"
  fetch_jars
  ensure_sasl_password
  ensure_tls
  if have_tls && port_open "$SSL_PORT"; then
    die "SSL port $SSL_PORT is already in use by another process (set KAFKA_SSL_PORT or stop it)"
  fi
  write_props
  format_storage

  [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.prev"   # keep one previous run's log for post-mortems
  local t0=$SECONDS
  # setsid+nohup: the broker must survive the calling shell/terminal (make, CI step).
  # The inner bash writes its own PID and then execs java, so the PID file is exactly the JVM.
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
    java $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$LOG4J_BROKER" -Dkafka.logs.dir="$KDIR" \
      -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    >"$LOG" 2>&1 </dev/null 9>&- &   # 9>&-: do not leak the script lock into the broker
  local i
  for i in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || die "broker process did not start, see $(rel "$LOG")"
  wait_ready "$pid"
  ensure_scram_user
  echo "kafka: ready on $LOCAL_BOOTSTRAP (pid $pid, started in $((SECONDS - t0))s, log $(rel "$LOG"))"
}

cmd_down() {
  if external_broker; then
    echo "kafka: external broker in use ($KAFKA_BOOTSTRAP_SERVERS), nothing to stop"
    return 0
  fi
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PIDFILE"
    echo "kafka: not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "kafka: broker did not stop within 30s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PIDFILE"
  echo "kafka: stopped"
}

# A hard crash for fault tests: SIGKILL, no shutdown; `up` restarts on the same data.
cmd_kill() {
  external_broker && die "an external broker is in use ($KAFKA_BOOTSTRAP_SERVERS): not killing it"
  local pid
  pid="$(running_pid)" || { echo "kafka: not running"; return 0; }
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  echo "kafka: killed (pid $pid)"
}

cmd_status() {
  if external_broker; then
    echo "kafka: external broker $KAFKA_BOOTSTRAP_SERVERS (not managed here)"
    return 0
  fi
  local pid
  if pid="$(running_pid)" && port_open "$PORT"; then
    echo "kafka: running on $LOCAL_BOOTSTRAP (pid $pid)"
    return 0
  fi
  echo "kafka: not running"
  return 1
}

cmd_wipe() {
  cmd_down
  rm -rf "$DATA" "$CLUSTER_ID_FILE" "$PROPS" "$LOG" "$LOG.prev" "$KDIR/format.log" "$SCRAM_MARKER"
  echo "kafka: data wiped (jars kept in $(rel "$LIBS"))"
}

# Serialize up/down/wipe so two concurrent callers (parallel make, test runners)
# cannot both start a server on the same data directory.
lock() {
  mkdir -p "$KDIR"
  exec 9>"$KDIR/.lock"
  flock -w 120 9 || die "another kafka.sh is still running (lock $(rel "$KDIR/.lock"))"
}

case "${1:-}" in
  up) lock; cmd_up ;;
  down) lock; cmd_down ;;
  kill) lock; cmd_kill ;;
  status) cmd_status ;;
  wipe) lock; cmd_wipe ;;
  run-class)
    shift
    [[ $# -ge 1 ]] || die "usage: $0 run-class CLASS [ARGS...]"
    require_java
    [[ -f "$POM_HASH_FILE" ]] || die "jars not fetched yet, run '$0 up' first"
    run_class "$@"
    ;;
  *)
    echo "usage: $0 {up|down|kill|status|wipe|run-class CLASS [ARGS...]}" >&2
    exit 2
    ;;
esac

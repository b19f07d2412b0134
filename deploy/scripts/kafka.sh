#!/usr/bin/env bash
# Local Apache Kafka 4.1 on loopback (KRaft, each node a broker and a controller in one JVM),
# without Docker: jars come from Maven Central via deploy/kafka/pom.xml. One node by default;
# KAFKA_BROKERS=3 makes a three-node cluster as production runs it: every topic, Kafka's own
# included, on three replicas with min.insync.replicas=2, and unclean leader election off.
# A missing JDK or Maven is installed with apt-get when running as root.
#
#   deploy/scripts/kafka.sh up [NODE]     start every node (or node NODE) that is not running
#   deploy/scripts/kafka.sh kill [NODE]   SIGKILL every node (or node NODE): a crash, for fault tests
#   deploy/scripts/kafka.sh down|status|wipe|bootstrap
#   deploy/scripts/kafka.sh run-class CLASS [ARGS...]   # e.g. org.apache.kafka.tools.TopicCommand --list ...
#
# Environment:
#   REBOUND_STATE            state root (default: <repo>/.state); the jars go to $REBOUND_STATE/kafka/libs
#   KAFKA_STATE              the cluster's own directory (default: $REBOUND_STATE/kafka); node 1
#                            keeps its data there, node N in node-N/
#   KAFKA_BROKERS            nodes in the cluster (default: as many as its storage was formatted
#                            for, else 1). Another count than the storage's needs `wipe` first
#   KAFKA_PORT               client listener port (default 19092); node N listens on it + 100 x (N - 1),
#                            and so do the ports below
#   KAFKA_CONTROLLER_PORT    KRaft controller port (default 19093)
#   KAFKA_SASL_PORT          SASL_PLAINTEXT listener, SCRAM-SHA-512 (default 19094)
#   KAFKA_SSL_PORT           SASL_SSL listener, SCRAM-SHA-512 over TLS (default 19095; only
#                            when openssl is installed)
#   KAFKA_HEAP_OPTS          JVM heap flags per node (default "-Xms256m -Xmx1g"; "-Xms128m -Xmx512m"
#                            with several nodes)
#   KAFKA_READY_TIMEOUT      seconds to wait for the nodes on `up` (default 60)
#   KAFKA_BOOTSTRAP_SERVERS  if set to anything but the local address(es) (`bootstrap` prints
#                            them), an external broker is used and this script does nothing
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
KDIR="${KAFKA_STATE:-$STATE_ROOT/kafka}"
LIBS="$STATE_ROOT/kafka/libs"
CLUSTER_ID_FILE="$KDIR/cluster.id"
BROKERS_FILE="$KDIR/brokers"   # how many nodes the storage was formatted for (absent: 1)
POM_HASH_FILE="$LIBS/.pom.sha256"
SASL_USER=rebound
SASL_PASSWORD_FILE="$KDIR/sasl-password"
# Which cluster id and password the SCRAM user was last created for (created again when either changes).
SCRAM_MARKER="$KDIR/.scram-user"
TLS_DIR="$KDIR/tls"

HOST=127.0.0.1
# Unset, the size the cluster's storage was formatted for, so that down, status, kill and wipe
# reach every node of a cluster started with KAFKA_BROKERS=3.
BROKERS="${KAFKA_BROKERS:-$(cat "$BROKERS_FILE" 2>/dev/null || echo 1)}"
PORT="${KAFKA_PORT:-19092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
SASL_PORT="${KAFKA_SASL_PORT:-19094}"
SSL_PORT="${KAFKA_SSL_PORT:-19095}"
READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-60}"

die() { echo "kafka: $*" >&2; exit 1; }

[[ "$BROKERS" =~ ^[1-9]$ ]] || die "KAFKA_BROKERS=$BROKERS: use a number of nodes from 1 to 9"
if ((BROKERS == 1)); then HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"; else HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"; fi
NODES="$(seq "$BROKERS")"

# Node N's directory, files and ports (node 1 keeps the single-node layout).
node_dir() { if (($1 == 1)); then echo "$KDIR"; else echo "$KDIR/node-$1"; fi; }
node_data() { echo "$(node_dir "$1")/data"; }
node_log() { echo "$(node_dir "$1")/kafka.log"; }
node_pidfile() { echo "$(node_dir "$1")/kafka.pid"; }
node_props() { echo "$(node_dir "$1")/server.properties"; }
node_port() { echo $(($2 + 100 * ($1 - 1))); }

LOCAL_BOOTSTRAP="$(for n in $NODES; do printf '%s%s:%s' "$([[ $n == 1 ]] || echo ,)" "$HOST" "$(node_port "$n" "$PORT")"; done)"
QUORUM_VOTERS="$(for n in $NODES; do printf '%s%s@%s:%s' "$([[ $n == 1 ]] || echo ,)" "$n" "$HOST" "$(node_port "$n" "$CONTROLLER_PORT")"; done)"

# Display paths relative to the repo when possible (shorter error lines).
rel() { local p="$1"; [[ "$p" == "$REPO_ROOT/"* ]] && p="${p#"$REPO_ROOT"/}"; echo "$p"; }

external_broker() {
  # The local addresses are not "external" (node 1's alone, or all of them): only others are.
  [[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" && "$KAFKA_BOOTSTRAP_SERVERS" != "$LOCAL_BOOTSTRAP" \
     && "$KAFKA_BOOTSTRAP_SERVERS" != "$HOST:$PORT" ]]
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# PID of node N if it is alive (checks the cmdline so a recycled PID is never trusted).
running_pid() {
  local pidfile pid
  pidfile="$(node_pidfile "$1")"
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $(node_props "$1")" || return 1
  echo "$pid"
}

# The node named on the command line (every node when none is), checked against KAFKA_BROKERS.
nodes_named() {
  [[ -z "${1:-}" ]] && { echo "$NODES"; return 0; }
  [[ "$1" =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= BROKERS)) || die "node $1: the cluster has nodes 1 to $BROKERS (KAFKA_BROKERS)"
  echo "$1"
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
  local tmp="$LIBS.tmp"
  mkdir -p "$(dirname "$LIBS")"
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
  local node="$1" props port sasl ssl
  props="$(node_props "$node")"
  port="$(node_port "$node" "$PORT")"
  sasl="$(node_port "$node" "$SASL_PORT")"
  ssl="$(node_port "$node" "$SSL_PORT")"
  local listeners="PLAINTEXT://$HOST:$port,CONTROLLER://$HOST:$(node_port "$node" "$CONTROLLER_PORT"),SASL://$HOST:$sasl"
  local advertised="PLAINTEXT://$HOST:$port,SASL://$HOST:$sasl"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT"
  if have_tls; then
    listeners+=",SASL_SSL://$HOST:$ssl"
    advertised+=",SASL_SSL://$HOST:$ssl"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  # Three replicas of everything where there are three nodes, two of them in sync for a write.
  local replicas=1 min_isr=1
  ((BROKERS >= 3)) && replicas=3 && min_isr=2
  mkdir -p "$(node_dir "$node")"
  : >"$props" && chmod 600 "$props"   # it holds the local keystore password
  cat >"$props" <<PROPS
# Generated by deploy/scripts/kafka.sh on every 'up' -- edit the script, not this file.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$QUORUM_VOTERS
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$(node_data "$node")

# SCRAM-SHA-512 on the SASL listeners; users live in the KRaft metadata (user $SASL_USER).
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
  if have_tls; then
    cat >>"$props" <<PROPS
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$(cat "$TLS_DIR/keystore-password")
PROPS
  fi
  cat >>"$props" <<PROPS

num.partitions=6
default.replication.factor=$replicas
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
unclean.leader.election.enable=false
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# A restarted (or crashed) node re-registers sooner: fault tests restart it often.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=1000
message.max.bytes=2097152
# Abort hung transactions quickly so crashed test producers don't block consumers for long.
transaction.abort.timed.out.transaction.cleanup.interval.ms=10000
PROPS
  if ((BROKERS == 1)); then
    # One node has no other node to show that the controller is alive: its idle no-op metadata
    # record (KIP-835) every 5 s instead of every 0.5 s (docs/benchmarks.md, "Light load").
    echo "metadata.max.idle.interval.ms=5000" >>"$props"
  fi
}

formatted_for() { if [[ -s "$BROKERS_FILE" ]]; then cat "$BROKERS_FILE"; else echo 1; fi; }

# Storage formatted for another number of nodes cannot join this cluster's quorum.
check_formatted_size() {
  [[ -f "$(node_data 1)/meta.properties" ]] || return 0
  local had
  had="$(formatted_for)"
  [[ "$had" == "$BROKERS" ]] \
    || die "$(rel "$KDIR") holds a $had-node cluster, KAFKA_BROKERS=$BROKERS asks for $BROKERS: stop it and wipe its data first (KAFKA_BROKERS=$had $0 wipe, or make clean-state), or set KAFKA_STATE to another directory"
}

format_storage() {
  local node="$1" data
  data="$(node_data "$node")"
  [[ -f "$data/meta.properties" ]] && return 0
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    run_class kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE" \
      || die "could not generate a cluster id (kafka.tools.StorageTool random-uuid)"
  fi
  echo "kafka: formatting node $node's storage in $(rel "$data") (cluster id $(cat "$CLUSTER_ID_FILE"))"
  run_class kafka.tools.StorageTool format --ignore-formatted \
      -t "$(cat "$CLUSTER_ID_FILE")" -c "$(node_props "$node")" \
      --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$(cat "$SASL_PASSWORD_FILE")]" \
      >"$KDIR/format.log" 2>&1 \
    || die "storage format failed, see $(rel "$KDIR/format.log")"
  echo "$BROKERS" >"$BROKERS_FILE"
  scram_marker_value >"$SCRAM_MARKER"
}

# Storage formatted before the SASL listener existed (or a new password): create the user on the
# running cluster. Idempotent; skipped while the marker matches, so restarts stay fast.
ensure_scram_user() {
  [[ -f "$SCRAM_MARKER" && "$(cat "$SCRAM_MARKER")" == "$(scram_marker_value)" ]] && return 0
  run_class kafka.admin.ConfigCommand --bootstrap-server "$LOCAL_BOOTSTRAP" --alter \
      --add-config "SCRAM-SHA-512=[password=$(cat "$SASL_PASSWORD_FILE")]" \
      --entity-type users --entity-name "$SASL_USER" >"$KDIR/scram.log" 2>&1 \
    || die "could not create the SCRAM user $SASL_USER, see $(rel "$KDIR/scram.log")"
  scram_marker_value >"$SCRAM_MARKER"
  echo "kafka: SCRAM-SHA-512 user $SASL_USER created (password in $(rel "$SASL_PASSWORD_FILE"))"
}

# Ready = each node named (every node by default) has its port answering, logged that startup
# finished (it waits to be unfenced before logging it), and a real metadata round-trip lists its
# broker id. A node not named may be down: `up 2` while node 1 is killed waits for node 2 alone.
wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT)) wanted="${*:-$NODES}" node pid missing
  while ((SECONDS < deadline)); do
    missing=""
    for node in $wanted; do
      pid="$(cat "$(node_pidfile "$node")" 2>/dev/null || true)"
      [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || die "node $node exited during startup, see $(rel "$(node_log "$node")")"
      port_open "$(node_port "$node" "$PORT")" && grep -q "Kafka Server started" "$(node_log "$node")" 2>/dev/null \
        || missing+=" $node"
    done
    if [[ -z "$missing" ]]; then
      local listed
      listed="$(timeout 20 java -Xmx256m -Dlog4j2.configurationFile="$LOG4J_TOOLS" -cp "$LIBS/*" \
           org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$LOCAL_BOOTSTRAP" 2>/dev/null || true)"
      for node in $wanted; do
        grep -q "(id: $node " <<<"$listed" || missing+=" $node"
      done
      [[ -z "$missing" ]] && return 0
    fi
    sleep 0.3
  done
  die "node(s)$missing did not become ready in ${READY_TIMEOUT}s (left running; 'kafka.sh down' stops them), see $(rel "$KDIR")/**/kafka.log"
}

start_node() {
  local node="$1" port pid log pidfile
  port="$(node_port "$node" "$PORT")"
  log="$(node_log "$node")"
  pidfile="$(node_pidfile "$node")"
  rm -f "$pidfile"
  port_open "$port" && die "port $port is already in use by another process (set KAFKA_PORT or stop it)"
  port_open "$(node_port "$node" "$CONTROLLER_PORT")" && die "controller port $(node_port "$node" "$CONTROLLER_PORT") is already in use by another process (set KAFKA_CONTROLLER_PORT or stop it)"
  port_open "$(node_port "$node" "$SASL_PORT")" && die "SASL port $(node_port "$node" "$SASL_PORT") is already in use by another process (set KAFKA_SASL_PORT or stop it)"
  if have_tls && port_open "$(node_port "$node" "$SSL_PORT")"; then
    die "SSL port $(node_port "$node" "$SSL_PORT") is already in use by another process (set KAFKA_SSL_PORT or stop it)"
  fi
  mkdir -p "$(node_data "$node")"
  write_props "$node"
  format_storage "$node"
  [[ -f "$log" ]] && mv -f "$log" "$log.prev"   # keep one previous run's log for post-mortems
  # setsid+nohup: the node must survive the calling shell/terminal (make, CI step).
  # The inner bash writes its own PID and then execs java, so the PID file is exactly the JVM.
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" \
    java $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$LOG4J_BROKER" -Dkafka.logs.dir="$(node_dir "$node")" \
      -cp "$LIBS/*" kafka.Kafka "$(node_props "$node")" \
    >"$log" 2>&1 </dev/null 9>&- &   # 9>&-: do not leak the script lock into the node
  local i
  for i in $(seq 50); do [[ -s "$pidfile" ]] && break; sleep 0.1; done
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  [[ -n "$pid" ]] || die "node $node did not start, see $(rel "$log")"
}

cmd_up() {
  if external_broker; then
    echo "kafka: KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS is set, using the external broker (nothing started)"
    return 0
  fi
  local node nodes started=""
  check_formatted_size
  nodes="$(nodes_named "${1:-}")" || exit 1
  for node in $nodes; do
    running_pid "$node" >/dev/null || started+=" $node"
  done
  if [[ -z "$started" ]]; then
    # All running, or another 'up' is still starting them: wait for them either way.
    wait_ready $nodes
    echo "kafka: already running on $LOCAL_BOOTSTRAP"
    return 0
  fi
  require_java
  mkdir -p "$KDIR"
  fetch_jars
  ensure_sasl_password
  ensure_tls
  local t0=$SECONDS
  # Every node first, then the wait: a controller quorum of several nodes forms only once a
  # majority of them runs.
  for node in $started; do start_node "$node"; done
  wait_ready $started
  ensure_scram_user
  echo "kafka: ready on $LOCAL_BOOTSTRAP (node(s)$started started in $((SECONDS - t0))s, logs in $(rel "$KDIR"))"
}

stop_pids() {
  local signal="$1" pid
  shift
  for pid in "$@"; do kill "-$signal" "$pid" 2>/dev/null || true; done
}

cmd_down() {
  if external_broker; then
    echo "kafka: external broker in use ($KAFKA_BOOTSTRAP_SERVERS), nothing to stop"
    return 0
  fi
  local node pid pids=()
  for node in $NODES; do
    if pid="$(running_pid "$node")"; then pids+=("$pid"); else rm -f "$(node_pidfile "$node")"; fi
  done
  if ((${#pids[@]} == 0)); then
    echo "kafka: not running"
    return 0
  fi
  stop_pids TERM "${pids[@]}"   # all at once: a node stopping alone may wait for a quorum that is leaving too
  local deadline=$((SECONDS + 30)) alive
  while ((SECONDS < deadline)); do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    ((${#alive[@]} == 0)) && break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "kafka: pid $pid did not stop within 30s, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  done
  for node in $NODES; do rm -f "$(node_pidfile "$node")"; done
  echo "kafka: stopped"
}

# A hard crash for fault tests: SIGKILL, no shutdown; `up` restarts on the same data.
cmd_kill() {
  external_broker && die "an external broker is in use ($KAFKA_BOOTSTRAP_SERVERS): not killing it"
  local node nodes pid killed=""
  nodes="$(nodes_named "${1:-}")" || exit 1
  for node in $nodes; do
    pid="$(running_pid "$node")" || continue
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$(node_pidfile "$node")"
    killed+=" $node (pid $pid)"
  done
  if [[ -z "$killed" ]]; then echo "kafka: not running"; else echo "kafka: killed node(s)$killed"; fi
}

cmd_status() {
  if external_broker; then
    echo "kafka: external broker $KAFKA_BOOTSTRAP_SERVERS (not managed here)"
    return 0
  fi
  local node pid down=0
  for node in $NODES; do
    if pid="$(running_pid "$node")" && port_open "$(node_port "$node" "$PORT")"; then
      echo "kafka: node $node running on $HOST:$(node_port "$node" "$PORT") (pid $pid)"
    else
      echo "kafka: node $node not running"
      down=1
    fi
  done
  return "$down"
}

cmd_wipe() {
  cmd_down
  local node
  for node in $NODES; do
    rm -rf "$(node_data "$node")" "$(node_props "$node")" "$(node_log "$node")" "$(node_log "$node").prev"
    ((node == 1)) || rm -rf "$(node_dir "$node")"
  done
  rm -f "$CLUSTER_ID_FILE" "$BROKERS_FILE" "$KDIR/format.log" "$SCRAM_MARKER"
  echo "kafka: data wiped (jars kept in $(rel "$LIBS"))"
}

# Serialize up/down/kill/wipe so two concurrent callers (parallel make, test runners)
# cannot both start a server on the same data directory.
lock() {
  mkdir -p "$KDIR"
  exec 9>"$KDIR/.lock"
  flock -w 120 9 || die "another kafka.sh is still running (lock $(rel "$KDIR/.lock"))"
}

case "${1:-}" in
  up) lock; cmd_up "${2:-}" ;;
  down) lock; cmd_down ;;
  kill) lock; cmd_kill "${2:-}" ;;
  status) cmd_status ;;
  wipe) lock; cmd_wipe ;;
  bootstrap) echo "$LOCAL_BOOTSTRAP" ;;
  run-class)
    shift
    [[ $# -ge 1 ]] || die "usage: $0 run-class CLASS [ARGS...]"
    require_java
    [[ -f "$POM_HASH_FILE" ]] || die "jars not fetched yet, run '$0 up' first"
    run_class "$@"
    ;;
  *)
    echo "usage: $0 {up [NODE]|down|kill [NODE]|status|wipe|bootstrap|run-class CLASS [ARGS...]}" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Single-node Apache Kafka 4.1.1 (KRaft, broker+controller) for binlake's tests.
#
#   tests/services/kafka.sh start|stop|status|env
#
# The broker's jars come from Maven Central (tests/services/kafka/pom.xml, no
# tarball) and are cached in ${XDG_CACHE_HOME:-$HOME/.cache}/binlake/kafka-4.1.1.
# Runtime state (config, data, logs) lives in ${BINLAKE_SERVICES_DIR:-<repo>/.services}/kafka.
# Ports: 127.0.0.1:${BINLAKE_KAFKA_PORT:-19092} (PLAINTEXT),
# ${BINLAKE_KAFKA_CONTROLLER_PORT:-19093} (CONTROLLER) and
# ${BINLAKE_KAFKA_SASL_PORT:-PORT+2} (SASL_PLAINTEXT, mechanism PLAIN, user `binlake`,
# password `binlake-sasl`: for the secured-cluster test). TLS listeners, with certificates
# this script makes with openssl (a CA, the broker's certificate for 127.0.0.1/localhost,
# a client certificate) in <state>/tls, kept across starts:
# ${BINLAKE_KAFKA_SSL_PORT:-PORT+3} (SSL, server certificate only),
# ${BINLAKE_KAFKA_SASL_SSL_PORT:-PORT+4} (SASL_SSL, mechanism SCRAM-SHA-512, user
# `binlake`, password `binlake-scram`) and ${BINLAKE_KAFKA_MTLS_PORT:-PORT+5} (SSL that
# requires a client certificate signed by the CA). `env` prints where tests find them.
# Topics are not auto-created.
set -euo pipefail

log() { echo "[kafka] $*" >&2; }
die() { log "error: $*"; exit 1; }

KAFKA_VERSION=4.1.1
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
POM=$SCRIPT_DIR/kafka/pom.xml
SERVICES_DIR=${BINLAKE_SERVICES_DIR:-$REPO/.services}
mkdir -p "$SERVICES_DIR"
SERVICES_DIR=$(cd "$SERVICES_DIR" && pwd) # absolute, even if given relative

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/binlake/kafka-$KAFKA_VERSION
LIB=$CACHE/lib
MARKER=$CACHE/.complete # holds the sha256 of the pom the jars were fetched for

PORT=${BINLAKE_KAFKA_PORT:-19092}
CONTROLLER_PORT=${BINLAKE_KAFKA_CONTROLLER_PORT:-19093}
SASL_PORT=${BINLAKE_KAFKA_SASL_PORT:-$((PORT + 2))}
SSL_PORT=${BINLAKE_KAFKA_SSL_PORT:-$((PORT + 3))}
SASL_SSL_PORT=${BINLAKE_KAFKA_SASL_SSL_PORT:-$((PORT + 4))}
MTLS_PORT=${BINLAKE_KAFKA_MTLS_PORT:-$((PORT + 5))}
SCRAM_USER=binlake
SCRAM_PASSWORD=binlake-scram
HEAP=${BINLAKE_KAFKA_HEAP:-1g}
START_TIMEOUT=${BINLAKE_KAFKA_START_TIMEOUT:-60}
STOP_TIMEOUT=${BINLAKE_KAFKA_STOP_TIMEOUT:-30}
for p in "$PORT" "$CONTROLLER_PORT" "$SASL_PORT" "$SSL_PORT" "$SASL_SSL_PORT" "$MTLS_PORT"; do
    [[ $p =~ ^[0-9]+$ ]] ||
        die "BINLAKE_KAFKA_PORT, BINLAKE_KAFKA_CONTROLLER_PORT, BINLAKE_KAFKA_SASL_PORT, BINLAKE_KAFKA_SSL_PORT, BINLAKE_KAFKA_SASL_SSL_PORT and BINLAKE_KAFKA_MTLS_PORT must be port numbers ('$p')"
done

RUN=$SERVICES_DIR/kafka
DATA=$RUN/data
LOGS=$RUN/logs
PROPS=$RUN/server.properties
LOG4J=$RUN/log4j2.properties
PIDFILE=$RUN/kafka.pid
SERVER_LOG=$LOGS/server.log
OUT_LOG=$LOGS/kafka.out
FORMATTED_FOR=$RUN/.formatted-for # ports (and SCRAM users) the storage was formatted with
TLS=$RUN/tls
# Test-only secret of the broker's PKCS12 keystore.
KEYSTORE_PASSWORD=binlake-keystore

JAVA=${JAVA:-$(if [[ -n ${JAVA_HOME:-} ]]; then echo "$JAVA_HOME/bin/java"; else echo java; fi)}

# Download the broker jars once; later runs only compare the marker (no maven).
ensure_jars() {
    local want
    want=$(sha256sum "$POM" | cut -d' ' -f1)
    if [[ -f $MARKER && $(<"$MARKER") == "$want" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (Debian: apt-get install maven)"
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB"
    mkdir -p "$CACHE"
    rm -rf "$LIB.tmp"
    # Run from a scratch dir so maven leaves nothing behind in the repository.
    local scratch
    scratch=$(mktemp -d)
    if ! (cd "$scratch" && mvn -q -B -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIB.tmp" >"$CACHE/mvn.log" 2>&1); then
        rm -rf "$scratch"
        log "maven failed; last lines of $CACHE/mvn.log:"
        tail -n 30 "$CACHE/mvn.log" >&2
        exit 1
    fi
    rm -rf "$scratch"
    local jar
    for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar" \
        "kafka-server-$KAFKA_VERSION.jar" "kafka-raft-$KAFKA_VERSION.jar" \
        log4j-core-2.24.3.jar log4j-slf4j-impl-2.24.3.jar slf4j-api-1.7.36.jar; do
        [[ -s $LIB.tmp/$jar ]] || die "maven finished but $jar is missing from $LIB.tmp"
    done
    rm -rf "$LIB"
    mv "$LIB.tmp" "$LIB"
    echo "$want" >"$MARKER"
    log "cached $(find "$LIB" -name '*.jar' | wc -l) jars"
}

check_java() {
    command -v "$JAVA" >/dev/null || die "java not found (Kafka 4 needs Java 17+; set JAVA or JAVA_HOME)"
    local v
    v=$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    [[ ${v%%.*} =~ ^[0-9]+$ && ${v%%.*} -ge 17 ]] || die "Kafka 4 needs Java 17+, $JAVA is version '${v:-unknown}'"
}

# The test PKI, made once with openssl and kept (reused while every file is there): a CA,
# the broker's certificate (SAN 127.0.0.1 and localhost, so clients can verify the
# hostname) in a PKCS12 keystore, and a client certificate for the mTLS listener. The
# broker trusts the CA's PEM directly (ssl.truststore.type=PEM): no keytool needed.
ensure_tls() {
    local f complete=1
    for f in ca.pem ca-key.pem broker.p12 client-cert.pem client-key.pem; do
        [[ -s $TLS/$f ]] || complete=0
    done
    ((complete)) && return 0
    command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install openssl)"
    log "making the test CA and certificates in $TLS"
    rm -rf "$TLS.tmp"
    mkdir -p "$TLS.tmp"
    (
        cd "$TLS.tmp"
        set -e
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem \
            -days 3650 -subj "/CN=binlake test Kafka CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey rsa:2048 -nodes -keyout broker-key.pem -out broker.csr \
            -subj "/CN=127.0.0.1"
        printf '%s\n' 'subjectAltName = IP:127.0.0.1, DNS:localhost' \
            'extendedKeyUsage = serverAuth, clientAuth' >broker.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -days 3650 -extfile broker.ext -out broker-cert.pem
        openssl pkcs12 -export -in broker-cert.pem -inkey broker-key.pem -certfile ca.pem \
            -name broker -out broker.p12 -passout "pass:$KEYSTORE_PASSWORD"
        openssl req -newkey rsa:2048 -nodes -keyout client-key.pem -out client.csr \
            -subj "/CN=binlake"
        echo 'extendedKeyUsage = clientAuth' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -days 3650 -extfile client.ext -out client-cert.pem
        rm -f ./*.csr ./*.ext
    ) >"$LOGS/tls.log" 2>&1 || {
        log "making the certificates failed:"
        tail -n 30 "$LOGS/tls.log" >&2
        exit 1
    }
    rm -rf "$TLS"
    mv "$TLS.tmp" "$TLS"
}

write_config() {
    mkdir -p "$DATA" "$LOGS"
    cat >"$PROPS.new" <<EOF
# Generated by tests/services/kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SSL://127.0.0.1:$SSL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT,MTLS://127.0.0.1:$MTLS_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SSL://127.0.0.1:$SSL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT,MTLS://127.0.0.1:$MTLS_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,MTLS:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
# A secured listener for clients (SASL/PLAIN), as on clusters that require authentication.
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_binlake="binlake-sasl";
# TLS listeners (certificates from ensure_tls): SSL checks no client certificate, MTLS
# requires one signed by the test CA, SASL_SSL authenticates with SCRAM-SHA-512 (the user
# is created when the storage is formatted).
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$KEYSTORE_PASSWORD
ssl.key.password=$KEYSTORE_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
ssl.client.auth=none
listener.name.mtls.ssl.client.auth=required
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$DATA

# Single node: every internal topic has one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions than the default 50: the first group/transaction is faster.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4

group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=false

# Small footprint.
num.network.threads=2
num.io.threads=4
EOF
    mv -f "$PROPS.new" "$PROPS"
    cat >"$LOG4J.new" <<EOF
# Generated by tests/services/kafka.sh.
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $SERVER_LOG
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# Noisy at INFO: config dumps, per-request, per-partition and client chatter.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.network.name = kafka.network.RequestChannel\$
logger.network.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = WARN
logger.storage.name = org.apache.kafka.storage.internals.log
logger.storage.level = WARN
logger.logmanager.name = kafka.log
logger.logmanager.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
EOF
    mv -f "$LOG4J.new" "$LOG4J"
}

java_opts() {
    JAVA_OPTS=(-Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$LOGS")
}

# Format the KRaft storage once (re-format if the ports or the SCRAM user changed: the
# standalone controller records its own endpoint in the bootstrap metadata, and the SCRAM
# credentials are written there at format time).
# Partition folders above which the (disposable) test state is wiped at start: every test
# makes topics of its own, and a broker holding tens of thousands of partitions takes
# minutes to start.
MAX_PARTITIONS=${BINLAKE_KAFKA_MAX_PARTITIONS:-1000}

ensure_formatted() {
    local want="$PORT $CONTROLLER_PORT scram:$SCRAM_USER:$SCRAM_PASSWORD"
    if [[ -f $DATA/meta.properties ]]; then
        local partitions
        partitions=$(find "$DATA" -mindepth 1 -maxdepth 1 -type d | wc -l)
        if ((partitions > MAX_PARTITIONS)); then
            log "the test state holds $partitions partitions (over $MAX_PARTITIONS, slow to start); wiping $DATA"
            rm -rf "$DATA"
            mkdir -p "$DATA"
        elif [[ -f $FORMATTED_FOR && $(<"$FORMATTED_FOR") == "$want" ]]; then
            return 0
        else
            log "ports or SCRAM users changed since the storage was formatted; wiping $DATA"
            rm -rf "$DATA"
            mkdir -p "$DATA"
        fi
    fi
    # Cluster id: 16 random bytes, base64url without padding (as Uuid.randomUuid()).
    local id
    id=-
    while [[ $id == -* ]]; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    log "formatting storage in $DATA (cluster id $id)"
    if ! "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$LOG4J" -cp "$LIB/*" \
        kafka.tools.StorageTool format --standalone \
        -t "$id" -c "$PROPS" \
        --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]" \
        >"$LOGS/format.log" 2>&1; then
        log "storage format failed:"
        tail -n 30 "$LOGS/format.log" >&2
        exit 1
    fi
    echo "$want" >"$FORMATTED_FOR"
}

server_pid() {
    local pid
    [[ -s $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka ' || return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

is_running() { server_pid >/dev/null && port_open "$PORT"; }

show_log() {
    local f
    for f in "$SERVER_LOG" "$OUT_LOG"; do
        [[ -s $f ]] || continue
        log "last lines of $f:"
        tail -n 40 "$f" >&2
    done
}

cmd_start() {
    if is_running; then
        log "already running on 127.0.0.1:$PORT (pid $(server_pid))"
        return 0
    fi
    mkdir -p "$RUN"
    # Serialize concurrent starts of the same instance.
    exec 9>"$RUN/.lock"
    flock -w 300 9 || die "could not lock $RUN/.lock"
    if is_running; then
        log "already running on 127.0.0.1:$PORT (pid $(server_pid))"
        return 0
    fi
    if server_pid >/dev/null; then
        die "kafka (pid $(server_pid)) is alive but its port $PORT is closed; run '$0 stop' first"
    fi
    local p
    for p in "$PORT" "$CONTROLLER_PORT" "$SASL_PORT" "$SSL_PORT" "$SASL_SSL_PORT" "$MTLS_PORT"; do
        port_open "$p" && die "port $p is already in use by another process (set BINLAKE_KAFKA_PORT / BINLAKE_KAFKA_CONTROLLER_PORT / BINLAKE_KAFKA_SASL_PORT / BINLAKE_KAFKA_SSL_PORT / BINLAKE_KAFKA_SASL_SSL_PORT / BINLAKE_KAFKA_MTLS_PORT)"
    done
    ensure_jars
    check_java
    mkdir -p "$LOGS"
    ensure_tls
    write_config
    java_opts
    ensure_formatted

    log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$PORT (state: $RUN)"
    # Only look for the "started" line in what this run appends to the log.
    local offset=0
    [[ -f $SERVER_LOG ]] && offset=$(stat -c %s "$SERVER_LOG")
    setsid nohup "$JAVA" "${JAVA_OPTS[@]}" -cp "$LIB/*" kafka.Kafka "$PROPS" \
        >>"$OUT_LOG" 2>&1 </dev/null 9>&- &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    local i
    for ((i = 0; i < START_TIMEOUT * 5; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "kafka exited during startup"
            show_log
            rm -f "$PIDFILE"
            exit 1
        fi
        # KafkaRaftServer logs "[KafkaRaftServer nodeId=1] Kafka Server started" when ready.
        if port_open "$PORT" && tail -c "+$((offset + 1))" "$SERVER_LOG" 2>/dev/null |
            grep -q 'Kafka Server started'; then
            log "ready on 127.0.0.1:$PORT (pid $pid, log $SERVER_LOG)"
            return 0
        fi
        sleep 0.2
    done
    log "not ready after ${START_TIMEOUT}s (pid $pid still running; see $SERVER_LOG)"
    show_log
    exit 1
}

cmd_stop() {
    local pid
    if ! pid=$(server_pid); then
        log "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    log "stopping kafka (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$PIDFILE"
    log "stopped"
}

cmd_status() {
    if is_running; then
        echo "[kafka] running on 127.0.0.1:$PORT (pid $(server_pid), controller port $CONTROLLER_PORT, state $RUN)"
    else
        echo "[kafka] stopped (port $PORT, state $RUN)"
        return 1
    fi
}

cmd_env() {
    echo "export BINLAKE_TEST_KAFKA_BROKERS=127.0.0.1:$PORT"
    echo "export BINLAKE_TEST_KAFKA_SASL_BROKERS=127.0.0.1:$SASL_PORT"
    echo "export BINLAKE_TEST_KAFKA_SSL_BROKERS=127.0.0.1:$SSL_PORT"
    echo "export BINLAKE_TEST_KAFKA_SASL_SSL_BROKERS=127.0.0.1:$SASL_SSL_PORT"
    echo "export BINLAKE_TEST_KAFKA_MTLS_BROKERS=127.0.0.1:$MTLS_PORT"
    echo "export BINLAKE_TEST_KAFKA_CA=$TLS/ca.pem"
    echo "export BINLAKE_TEST_KAFKA_CLIENT_CERT=$TLS/client-cert.pem"
    echo "export BINLAKE_TEST_KAFKA_CLIENT_KEY=$TLS/client-key.pem"
    echo "export BINLAKE_TEST_KAFKA_SCRAM_USER=$SCRAM_USER"
    echo "export BINLAKE_TEST_KAFKA_SCRAM_PASSWORD=$SCRAM_PASSWORD"
    echo "export BINLAKE_TEST_KAFKA_LIB=$LIB"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*)
    echo "usage: $0 {start|stop|status|env}" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Real test servers on loopback: S3 (OpenStack Swift + s3api, SigV4), OpenSSH sshd (SFTP),
# PostgreSQL 15, and the rclone binary. Debian bookworm, as root.
#
#   bash .ci/infra.sh up     install what is missing (apt), start everything, write $INFRA/env
#   bash .ci/infra.sh down   stop everything this script started
#   bash .ci/infra.sh env    print the env file (exports the tests read)
#
# Idempotent: `up` when the servers already answer only rewrites nothing and prints the env.
# State lives under $INFRA (default /tmp/backupforge-infra). Tests read the FORGE_TEST_* variables
# from $INFRA/env; see docs/testing.md.
set -euo pipefail
INFRA=${INFRA:-/tmp/backupforge-infra}
ENV_FILE=$INFRA/env
S3_PORT=${FORGE_INFRA_S3_PORT:-18080}
SSH_PORT=${FORGE_INFRA_SSH_PORT:-12222}
PG_PORT=${FORGE_INFRA_PG_PORT:-15432}
MC_PORT=${FORGE_INFRA_MEMCACHED_PORT:-21211}
SWIFT_BASE=${FORGE_INFRA_SWIFT_BASE:-16200}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)

log() { echo "[infra] $*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  local need=()
  command -v swift-proxy-server >/dev/null || need+=(swift swift-proxy swift-account swift-container swift-object)
  command -v memcached >/dev/null || need+=(memcached)
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  command -v ssh-keygen >/dev/null || need+=(openssh-client)
  command -v rclone >/dev/null || need+=(rclone)
  [ -n "$PG_BIN" ] || need+=(postgresql)
  command -v curl >/dev/null || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  fi
}

start_s3() {
  local S=$INFRA/swift E=$INFRA/swift/etc
  if alive "$S/proxy.pid" && curl -sf "http://127.0.0.1:$S3_PORT/healthcheck" >/dev/null; then return; fi
  rm -rf "$S"; mkdir -p "$E" "$S/srv/node/d1" "$S/log"
  printf '[swift-hash]\nswift_hash_path_suffix = ci\nswift_hash_path_prefix = ci\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n' >"$E/swift.conf"
  local i=0
  for n in object container account; do
    local p=$((SWIFT_BASE + i)); i=$((i + 1))
    printf '[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = %s\ndevices = %s\nmount_check = false\nswift_dir = %s\nuser = root\nworkers = 1\nlog_udp_host = 127.0.0.1\nlog_udp_port = 9\n[pipeline:main]\npipeline = %s-server\n[app:%s-server]\nuse = egg:swift#%s\n[%s-replicator]\n[%s-updater]\n[%s-auditor]\n' \
      "$p" "$S/srv/node" "$E" "$n" "$n" "$n" "$n" "$n" "$n" >"$E/$n-server.conf"
    (cd "$E" && swift-ring-builder "$n.builder" create 8 1 1 && swift-ring-builder "$n.builder" add "r1z1-127.0.0.1:$p/d1" 1 &&
      swift-ring-builder "$n.builder" rebalance) >/dev/null 2>&1
  done
  cat >"$E/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $S3_PORT
swift_dir = $E
user = root
workers = 1
log_udp_host = 127.0.0.1
log_udp_port = 9
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MC_PORT
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
EOF
  memcached -l 127.0.0.1 -p "$MC_PORT" -U 0 -u nobody -m 64 >"$S/log/memcached.log" 2>&1 &
  echo $! >"$S/memcached.pid"
  for n in account container object proxy; do
    setsid swift-$n-server "$E/$n-server.conf" >"$S/log/$n.log" 2>&1 &
    echo $! >"$S/$n.pid"
  done
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$S3_PORT/healthcheck" >/dev/null && return; sleep 0.2; done
  log "Swift did not answer on 127.0.0.1:$S3_PORT; logs in $S/log"; tail -5 "$S/log/proxy.log" >&2; exit 1
}

start_ssh() {
  local K=$INFRA/ssh
  if alive "$K/sshd.pid"; then return; fi
  rm -rf "$K"; mkdir -p "$K/home" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$K/host_key" >/dev/null
  ssh-keygen -q -t ed25519 -N '' -f "$K/client_key" >/dev/null
  cp "$K/client_key.pub" "$K/authorized_keys"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$K/host_key.pub")" >"$K/known_hosts"
  printf 'ListenAddress 127.0.0.1\nPort %s\nHostKey %s/host_key\nPidFile %s/sshd.pid\nAuthorizedKeysFile %s/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nMaxStartups 100:30:200\nMaxSessions 100\nSubsystem sftp internal-sftp\n' \
    "$SSH_PORT" "$K" "$K" "$K" >"$K/sshd_config"
  /usr/sbin/sshd -t -f "$K/sshd_config"
  /usr/sbin/sshd -D -e -f "$K/sshd_config" >"$K/sshd.log" 2>&1 &
  echo $! >"$K/sshd.pid"
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$SSH_PORT") 2>/dev/null && return; sleep 0.1; done
  log "sshd did not listen on 127.0.0.1:$SSH_PORT"; cat "$K/sshd.log" >&2; exit 1
}

start_pg() {
  local P=$INFRA/pg
  if [ -f "$P/data/postmaster.pid" ] && kill -0 "$(head -1 "$P/data/postmaster.pid")" 2>/dev/null; then return; fi
  rm -rf "$P"; mkdir -p "$P"; chown postgres:postgres "$P"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$P/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$P/data" -l "$P/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $P -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
}

write_env() {
  cat >"$ENV_FILE" <<EOF
export FORGE_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export FORGE_TEST_S3_ACCESS_KEY=test:tester
export FORGE_TEST_S3_SECRET_KEY=testing
export FORGE_TEST_S3_REGION=us-east-1
export FORGE_TEST_SFTP_HOST=127.0.0.1
export FORGE_TEST_SFTP_PORT=$SSH_PORT
export FORGE_TEST_SFTP_USER=root
export FORGE_TEST_SFTP_KEY=$INFRA/ssh/client_key
export FORGE_TEST_SFTP_KNOWN_HOSTS=$INFRA/ssh/known_hosts
export FORGE_TEST_SFTP_ROOT=$INFRA/ssh/home
export FORGE_TEST_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
export FORGE_TEST_RCLONE=$(command -v rclone)
EOF
}

down() {
  local S=$INFRA/swift
  for f in "$S"/*.pid "$INFRA/ssh/sshd.pid"; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  if [ -n "$PG_BIN" ] && [ -f "$INFRA/pg/data/postmaster.pid" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$INFRA/pg/data" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -f "$ENV_FILE"
}

case "${1:-up}" in
up)
  if [ "$(id -u)" != 0 ]; then log "needs root (apt, sshd, postgres user)"; exit 2; fi
  mkdir -p "$INFRA"
  install_packages
  start_s3
  start_ssh
  start_pg
  write_env
  log "up: s3=http://127.0.0.1:$S3_PORT sftp=127.0.0.1:$SSH_PORT pg=127.0.0.1:$PG_PORT (env: $ENV_FILE)"
  ;;
down) down ;;
env) cat "$ENV_FILE" ;;
*) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac

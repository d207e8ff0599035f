#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests, never a system service:
#   scripts/pg-cluster.sh start DIR   initdb + pg_ctl start in DIR (as an unprivileged user when run
#                                     as root), on a free port; prints the connection string
#   scripts/pg-cluster.sh stop DIR    pg_ctl stop (fast: clients are disconnected)
#   scripts/pg-cluster.sh resume DIR  starts a stopped cluster again, on the same port
# KINKO_PG_LISTEN (default 127.0.0.1) sets listen_addresses; KINKO_PG_TRUST_NET (a CIDR) lets
# clients from that network in (for the network-partition test); KINKO_PG_TLS_DIR (holding
# server.crt and server.key) makes the cluster TLS-only. Installs Debian's postgresql package when initdb is missing. fsync stays on (the default).
set -euo pipefail
cmd="${1:?start|stop|resume}"; dir="${2:?directory}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  else
    sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
fi
as_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u nobody -- "$@"
  else
    "$@"
  fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    [ "$(id -u)" = 0 ] && chown nobody "$dir" && chmod 700 "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_user "$bin/initdb" -D "$dir/data" -A trust -U kinko -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    if [ -n "${KINKO_PG_TRUST_NET:-}" ]; then
      echo "host all all $KINKO_PG_TRUST_NET trust" >>"$dir/data/pg_hba.conf"
    fi
    tls=""
    if [ -n "${KINKO_PG_TLS_DIR:-}" ]; then
      # TLS only: the server's certificate and key from that directory, and no TCP client
      # in the clear (hostssl).
      install -m 600 "$KINKO_PG_TLS_DIR/server.crt" "$KINKO_PG_TLS_DIR/server.key" "$dir/data/"
      [ "$(id -u)" = 0 ] && chown nobody "$dir/data/server.crt" "$dir/data/server.key"
      sed -i 's/^host /hostssl /' "$dir/data/pg_hba.conf"
      tls="-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
    fi
    echo "-p $port -k $dir -c listen_addresses=${KINKO_PG_LISTEN:-127.0.0.1} -c max_connections=200 $tls" >"$dir/options"
    as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o "$(cat "$dir/options")" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "host=127.0.0.1 port=$port user=kinko dbname=postgres"
    ;;
  resume)
    as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o "$(cat "$dir/options")" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    ;;
  stop)
    as_user "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop|resume DIR" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Makes sure MariaDB, Redis and RabbitMQ answer on 127.0.0.1 (starting any that are down), creates the project's
# own MariaDB user with a generated password (root may accept only socket logins), and writes var/test.env with
# the URLs the integration and end-to-end tests use. Idempotent; safe to run before every `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
log() { printf '[backing] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do port_open "$port" && return 0; sleep 1; done
  log "$name did not come up on port $port"; return 1
}

if ! port_open 3306; then
  log "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_port 3306 MariaDB
fi
if ! port_open 6379; then
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 Redis
fi
if ! port_open 5672; then
  log "starting RabbitMQ"
  rabbitmq-server -detached
  wait_port 5672 RabbitMQ
fi

# The project's own MariaDB user. Its password is generated once per machine account and kept outside any
# checkout (two checkouts on one machine must not re-key each other's user).
state_dir=${LH_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/lianghua}
mkdir -p "$state_dir"
pwfile=$state_dir/mysql-password
if [ -n "${LH_TEST_MYSQL_PASSWORD:-}" ]; then
  printf '%s' "$LH_TEST_MYSQL_PASSWORD" > "$pwfile"
elif [ ! -s "$pwfile" ]; then
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$pwfile")
fi
pw=$(cat "$pwfile")
mysql_root() { mysql -uroot "$@" 2>/dev/null || mysql -uroot -h127.0.0.1 "$@"; }
for _ in $(seq 1 30); do mysql_root -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
mysql_root <<SQL
CREATE USER IF NOT EXISTS 'lianghua'@'127.0.0.1' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS 'lianghua'@'localhost' IDENTIFIED BY '$pw';
ALTER USER 'lianghua'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER 'lianghua'@'localhost' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON \`lh%\`.* TO 'lianghua'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`lh%\`.* TO 'lianghua'@'localhost';
FLUSH PRIVILEGES;
SQL

cat > var/test.env <<ENV
LH_TEST_MYSQL_URL=mysql+asyncmy://lianghua:$pw@127.0.0.1:3306
LH_TEST_REDIS_URL=redis://127.0.0.1:6379
LH_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672
ENV
chmod 600 var/test.env
log "MariaDB, Redis and RabbitMQ are up; test URLs in var/test.env"

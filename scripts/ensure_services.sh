#!/usr/bin/env bash
# Start the local PostgreSQL and RabbitMQ when they are installed but not running.
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
rabbit_up() { rabbitmqctl -q status >/dev/null 2>&1; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 60); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi

if ! rabbit_up; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached || true
  fi
  for _ in $(seq 1 90); do rabbit_up && break; sleep 1; done
  rabbit_up || { echo "RabbitMQ is not reachable" >&2; exit 1; }
  rabbitmqctl -q await_startup || true
fi
echo "PostgreSQL and RabbitMQ are up"

#!/usr/bin/env bash
# Install the Debian 12 packages needed to build dapr-c and run its tests.
# Runs itself through sudo when not root.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then exec sudo "$0" "$@"; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  build-essential autoconf automake libtool pkg-config \
  libevent-dev libjansson-dev libyaml-dev libssl-dev libsqlite3-dev libsystemd-dev check \
  libhiredis-dev libpq-dev libmongoc-dev libnats-dev librdkafka-dev libcurl4-openssl-dev libmosquitto-dev \
  systemd curl ca-certificates python3 python3-pytest valgrind abigail-tools \
  redis-server postgresql nats-server mosquitto mosquitto-clients wrk nginx prometheus \
  default-jre-headless maven python3-venv

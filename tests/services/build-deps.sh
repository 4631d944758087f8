#!/usr/bin/env bash
# Installs what building and testing binlake needs from Debian, when it is missing:
# a C/C++ toolchain, cmake and the headers librdkafka's bundled build wants (libcurl's
# even with curl support off), OpenSSL and zlib; Java and Maven for the Kafka broker.
# Fast (no apt call at all) when everything is there.
set -euo pipefail

log() { echo "[build-deps] $*" >&2; }

missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_file() { compgen -G "$1" >/dev/null || missing+=("$2"); }

need_cmd cc build-essential
need_cmd c++ g++
need_cmd make make
need_cmd cmake cmake
need_cmd pkg-config pkg-config
need_cmd java openjdk-17-jre-headless
need_cmd mvn maven
need_cmd python3 python3
need_file '/usr/include/*/curl/curl.h' libcurl4-openssl-dev
need_file '/usr/include/openssl/ssl.h' libssl-dev
need_file '/usr/include/zlib.h' zlib1g-dev

if ((${#missing[@]} == 0)); then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    log "missing: ${missing[*]}; install them with your package manager"
    exit 1
fi
log "installing: ${missing[*]}"
as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }
as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >&2

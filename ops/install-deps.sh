#!/bin/sh
# install-deps.sh: installs the Debian packages loyaltyd needs to build, test and run.
# Installs only what is missing, so it is quick when everything is there. Debian 12 (bookworm).
set -eu

PKGS="build-essential cmake pkg-config
libuv1-dev libzmq3-dev liblmdb-dev lmdb-utils libprotobuf-c-dev protobuf-c-compiler
libcmocka-dev libyaml-dev libjansson-dev libxxhash-dev libmicrohttpd-dev tzdata curl
protobuf-compiler python3 python3-zmq python3-protobuf
clang libclang-rt-14-dev valgrind
postgresql libpq-dev gnuplot-nox"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "install-deps: need root (or sudo) to install:$missing" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing

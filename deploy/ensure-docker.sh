#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's
# docker.io when dockerd is missing, start it (through systemd when systemd
# runs, else directly), and wait for it. Used by `make setup` and .ci/run.
set -euo pipefail

wait_s=${DOCKERD_WAIT_S:-60}

if docker info >/dev/null 2>&1; then
	exit 0
fi
if ((EUID != 0)); then
	echo "ensure-docker: no Docker engine answers, and starting one needs root" >&2
	exit 1
fi
if ! command -v dockerd >/dev/null; then
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io
fi
if [[ -d /run/systemd/system ]] && systemctl start docker 2>/dev/null; then
	:
else
	log=$(mktemp -d)/dockerd.log
	setsid dockerd >"$log" 2>&1 </dev/null &
	echo "ensure-docker: started dockerd (log: $log)"
fi
for ((i = 0; i < wait_s; i++)); do
	if docker info >/dev/null 2>&1; then
		exit 0
	fi
	sleep 1
done
echo "ensure-docker: dockerd did not answer within ${wait_s}s" >&2
exit 1

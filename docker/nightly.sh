#!/bin/sh
# The scheduler service: run `gr2 nightly` once a day, as a Ray Job on the compose cluster.
#
# A sleep loop rather than cron: no daemon, no crontab environment to reconstruct (cron starts jobs with an
# empty environment, and the job needs RAY_AUTH_TOKEN and GR2_*), logs go to `docker compose logs scheduler`.
# The job is submitted with `gr2 submit`, so its driver runs on the ray-head node (a Ray job must start on
# a Ray node) and its Spark driver there talks to spark-master; this container only waits for the result.
#
#   GR2_NIGHTLY_AT        time of day, UTC, HH:MM (default 02:00)
#   GR2_NIGHTLY_ON_START  1: also run once right after the container starts
#   GR2_NIGHTLY_ARGS      extra arguments for `gr2 nightly`
#   GR2_CONFIG            config file, relative to /opt/gr2/app (default configs/compose.yaml)
#
# A run missed while the container was down is not caught up; the next one is at the next GR2_NIGHTLY_AT.
set -u
at="${GR2_NIGHTLY_AT:-02:00}"
config="${GR2_CONFIG:-configs/compose.yaml}"
cd /opt/gr2/app || exit 1

run() {
    echo "scheduler: $(date -u '+%Y-%m-%dT%H:%M:%SZ') submitting gr2 nightly"
    # shellcheck disable=SC2086  # GR2_NIGHTLY_ARGS is a list of words
    gr2 submit --config "$config" -- nightly ${GR2_NIGHTLY_ARGS:-}
    echo "scheduler: $(date -u '+%Y-%m-%dT%H:%M:%SZ') gr2 nightly ended with exit code $?"
}

if [ "${GR2_NIGHTLY_ON_START:-0}" = "1" ]; then
    run
fi
while true; do
    now=$(date -u +%s)
    next=$(date -u -d "today $at" +%s) || { echo "scheduler: bad GR2_NIGHTLY_AT=$at (want HH:MM)"; exit 2; }
    if [ "$next" -le "$now" ]; then
        next=$(date -u -d "tomorrow $at" +%s)
    fi
    echo "scheduler: next gr2 nightly at $(date -u -d "@$next" '+%Y-%m-%dT%H:%M:%SZ')"
    sleep $((next - now))
    run
done

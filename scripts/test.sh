#!/usr/bin/env bash
# `make test`: the whole suite as two pytest processes at once.
#
#   - tests/convergence (in the foreground, its output live): brings a fresh local cluster up,
#     gives it its first highstate, then runs the cluster tests in name order;
#   - every other suite (the host-level tests against real Consul, Docker, nginx, Flume, a QEMU
#     VM, ...), in the background; its output goes to .state/host-tests.log and is shown at the
#     end.
#
# Why two processes: the cluster's bring-up (about 10 minutes) and the host-level suites
# (about 20) need nothing from each other, and the convergence tests need only the cluster.
# In one process the convergence tests waited for the host-level suites, with the cluster idle
# for about 10 minutes. They shared the machine before too (the bring-up ran in the
# background, tests/support/cluster_warmup.py); now the first convergence tests also overlap
# the last host-level ones. The exit status is non-zero when either process failed.
#
# Arguments go to both pytest runs (e.g. `scripts/test.sh -x`).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=.venv/bin/pytest
mkdir -p .state
HOST_LOG=.state/host-tests.log
started=$(date +%s)

# The CPU weight of Docker's cgroup, which holds every container of the cluster: doubled for
# the run, restored after it. The kernel schedules each session (autogroup) as one entity, and
# Docker's group as one more: the cluster's eleven containers weighed as much as the host-level
# suites' pytest, or as one QEMU VM. During the bring-up, where the containers' first highstate
# is the critical path (430 of its 740 CPU-seconds), they got about a quarter of the machine:
# the bring-up took 24 min of session 17's clean-clone run, 13 on a quiet machine. At 2048
# they weigh as two sessions; the host-level suites keep one (nothing is starved). Measured
# (README "Tests", session 18): the bring-up under the host-level suites took 13.4 min, but
# `make test` as a whole did not get shorter: the host-level work moved into the convergence
# suite's time.
# A run that finds 2048 already (another run's) leaves it to that run.
DOCKER_SHARES=/sys/fs/cgroup/cpu/docker/cpu.shares
RUN_SHARES=2048
# On a fresh machine Docker's group does not exist yet: the engine's cgroupfs driver makes it
# with the first container, after this point, so CI's runs went unweighted (session 21: the
# containers' first highstates ended at 310-374 s unweighted, 194-231 s weighted, and the
# whole run took 42 min 39 s against 41 min 5 s). Made here
# (cgroup v1's mkdir), the engine puts its containers under it as it would under its own.
if [ -d /sys/fs/cgroup/cpu ] && [ ! -e "$(dirname "$DOCKER_SHARES")" ]; then
  mkdir "$(dirname "$DOCKER_SHARES")" 2>/dev/null || true
fi
docker_shares=$(cat "$DOCKER_SHARES" 2>/dev/null || true)
if [ -z "$docker_shares" ] || [ "$docker_shares" = "$RUN_SHARES" ]; then
  docker_shares=""
  echo "saltyard: Docker's cgroup CPU weight left as it is ($(cat "$DOCKER_SHARES" 2>/dev/null || echo 'no cgroup v1 cpu.shares'))"
elif echo "$RUN_SHARES" 2>/dev/null >"$DOCKER_SHARES"; then
  echo "saltyard: Docker's cgroup CPU weight $docker_shares -> $RUN_SHARES for the run"
else
  docker_shares=""
  echo "saltyard: Docker's cgroup CPU weight left as it is ($DOCKER_SHARES is not writable)"
fi
restore_shares() {
  [ -z "$docker_shares" ] || echo "$docker_shares" >"$DOCKER_SHARES" 2>/dev/null || true
}
trap restore_shares EXIT

# Every test's duration, in run order, stays in a JUnit file (.state/*-junit.xml) for finding where
# a run's time went; the console shows the 25 slowest.
# Every start and stop of the suites' own Consul agents and emulators, timed (tests/support/starts.py:
# the figure behind issue 13's question of one shared instance of each).
STARTS_LOG=.state/harness-starts.log
rm -f "$STARTS_LOG"
SALTYARD_STARTS_LOG="$STARTS_LOG" "$PYTEST" tests --ignore=tests/convergence --durations=25 --junitxml=.state/host-junit.xml "$@" >"$HOST_LOG" 2>&1 &
host_pid=$!
# An interrupted run stops the background suites too.
trap 'kill "$host_pid" 2>/dev/null; restore_shares' INT TERM
echo "saltyard: the host-level suites run in the background (log: $HOST_LOG)"

"$PYTEST" tests/convergence --durations=25 --junitxml=.state/convergence-junit.xml "$@"
convergence=$?
convergence_done=$(date +%s)

echo "saltyard: waiting for the host-level suites (log: $HOST_LOG)"
wait "$host_pid"
host=$?
done_at=$(date +%s)

echo
echo "================================ host-level suites ($HOST_LOG) ================================"
# Their failures (when any), durations and summary; the whole log is in the file.
if grep -qE '^=+ (FAILURES|ERRORS) =+$' "$HOST_LOG"; then
  sed -n -E '/^=+ (FAILURES|ERRORS) =+$/,$p' "$HOST_LOG"
else
  sed -n '/slowest .* durations/,$p' "$HOST_LOG"
fi
if [ -s "$STARTS_LOG" ]; then
  echo "saltyard: the host-level suites' own Consul agents and emulators: $(.venv/bin/python -m tests.support.starts "$STARTS_LOG")"
fi
echo
echo "saltyard: convergence suite exit $convergence after $(( (convergence_done - started) / 60 )) min; host-level suites exit $host after $(( (done_at - started) / 60 )) min (both started together)"
if [ "$host" -ne 0 ] || [ "$convergence" -ne 0 ]; then
  # A failure before the durations section (a collection error) shows in the log's tail.
  if ! grep -q 'slowest .* durations' "$HOST_LOG"; then tail -40 "$HOST_LOG"; fi
  exit 1
fi

#!/bin/sh
# tests/bench/interrupt.sh LT_BENCH: lt-bench stopped by a signal in the middle of a run must
# stop its daemon and its PostgreSQL server, remove their temp directories and exit 130
# (bench/main.c, catch_stop_signals). Twice: during the closed loop and during the PostgreSQL run.
set -u
bench=$1
fail=0
tmp=$(mktemp -d /tmp/lt-bench-int.XXXXXX)
chmod 755 "$tmp" # the PostgreSQL server runs as 'postgres' under $TMPDIR

# wait_for FILE PATTERN SECONDS: until the pattern shows in the file
wait_for() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt $(($3 * 10)) ] && return 1
        sleep 0.1
    done
}

interrupt_at() { # what, pattern, extra wait, closed-loop seconds
    log="$tmp/$1.log"
    bad=$fail
    fail=0
    TMPDIR="$tmp" "$bench" --quick --seconds "$4" --batch1-seconds 0 --open-seconds 0 \
        --pg-seconds 60 --members 20000 --mem-members 0 --no-replay --out "$tmp/out" \
        >"$log" 2>&1 &
    pid=$!
    if ! wait_for "$log" "$2" 90; then
        echo "FAIL ($1): '$2' never showed; log:"
        cat "$log"
        kill -9 $pid 2>/dev/null
        fail=1
        return
    fi
    sleep "$3"
    start=$(date +%s)
    kill -TERM $pid
    wait $pid
    rc=$?
    took=$(($(date +%s) - start))
    [ $rc -eq 130 ] || { echo "FAIL ($1): exit status $rc, not 130"; cat "$log"; fail=1; }
    [ $took -le 30 ] || { echo "FAIL ($1): took $took s to stop"; fail=1; }
    grep -q "interrupted by signal 15" "$log" || { echo "FAIL ($1): no 'interrupted' line"; fail=1; }
    if pgrep -f "$tmp/lt-bench" >/dev/null; then
        echo "FAIL ($1): processes left running:"
        pgrep -af "$tmp/lt-bench"
        fail=1
    fi
    left=$(find "$tmp" -mindepth 1 -maxdepth 1 -name 'lt-bench*' | head -5)
    [ -z "$left" ] || { echo "FAIL ($1): temp directories left: $left"; fail=1; }
    [ -e "$tmp/out/bench-result.json" ] && { echo "FAIL ($1): results written"; fail=1; }
    [ $fail -eq 0 ] && echo "$1: exit $rc after $took s, nothing left behind"
    [ $bad -eq 0 ] || fail=1
}

interrupt_at daemon "closed loop, 100 events/message" 1 60
interrupt_at postgres "PostgreSQL, same workload" 6 2
# belt and braces: never leave a server behind, even when the test fails
pgrep -f "$tmp/lt-bench" >/dev/null && pkill -9 -f "$tmp/lt-bench"
rm -rf "$tmp"
if [ $fail -eq 0 ]; then echo "2 passed, 0 failed"; else echo "0 passed, 2 failed"; fi
exit $fail

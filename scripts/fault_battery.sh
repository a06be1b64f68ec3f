#!/usr/bin/env bash
# Fault battery for lpcache: the scenarios of tests/test_faults.py, run by hand on a synthetic dataset.
#
#   scripts/fault_battery.sh [WORKDIR]        (default: a fresh temporary folder, kept for inspection)
#
# Scenarios: SIGKILL during extract / propagate / sweep then re-run (finished work not redone, nothing
# half-written accepted); truncated, corrupted and wrong-format cache files (cache verify + the stages);
# a full disk (RLIMIT_FSIZE) during extract and propagate; two concurrent sweeps on one output folder.
# Prints PASS/FAIL per check and exits 1 if any check failed. Needs: python with lpcache importable.
set -u
PY=${PYTHON:-python}
WORK=${1:-$(mktemp -d -t lpcache-faults.XXXXXX)}
mkdir -p "$WORK"
LP="$PY -m lpcache.cli"
BID=efficientnet_lite0-native
RUN=${BID}__t0.7_k8_r18_L20
FAILED=0
export PYTHONWARNINGS=ignore

pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
mtime() { stat -c %Y.%y "$@" 2>/dev/null | sort | md5sum; }

# kill_when "CONDITION (shell)" CMD...: start CMD, SIGKILL it as soon as CONDITION holds.
kill_when() {
    local condition=$1; shift
    "$@" >/dev/null 2>"$WORK/killed.err" &
    local pid=$!
    for _ in $(seq 1 30000); do
        if eval "$condition"; then kill -KILL "$pid"; wait "$pid" 2>/dev/null; return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then echo "  (process ended before the kill point)"; return 1; fi
        sleep 0.01
    done
    kill -KILL "$pid"; return 1
}

echo "== working in $WORK"
DAVIS=$WORK/davis
[ -f "$DAVIS/ImageSets/2017/val.txt" ] || $PY -c "
from lpcache.synthetic import make_synthetic_davis
make_synthetic_davis('$DAVIS', n_sequences=4, n_frames=6, hw=(120, 216), seed=5)"
SEQS="synthetic-00 synthetic-01 synthetic-02 synthetic-03"

echo "== 1. SIGKILL during extract, then re-run"
CACHE=$WORK/cache; C=$CACHE/$BID
rm -rf "$CACHE"
EXTRACT=($LP extract --davis "$DAVIS" --cache "$CACHE" --protocol native --num-workers 0 --batch-size 1)
kill_when 'ls $C/*.h5 >/dev/null 2>&1 && ls $C/*.h5.partial >/dev/null 2>&1' "${EXTRACT[@]}" \
    && pass "extract killed with a finished file and a .partial on disk" || fail "extract kill point"
finished=$(ls $C/*.h5); done_before=$(echo "$finished" | wc -l); stamp=$(mtime $finished)
check "every finished .h5 verifies after the kill ($done_before files)" bash -c \
    "$PY -c 'import sys; from lpcache.cache import verify_sequence as v; sys.exit(any(v(p) for p in sys.argv[1:]))' $finished"
"${EXTRACT[@]}" >"$WORK/extract.out" 2>&1
check "extract re-run skipped the $done_before finished files" grep -q "$done_before already complete" "$WORK/extract.out"
check "finished files untouched (mtimes)" test "$stamp" = "$(mtime $finished)"
check "no .partial left, cache verifies" bash -c "! ls $C/*.partial 2>/dev/null && $LP cache verify $C >/dev/null 2>&1"

echo "== 2. SIGKILL during propagate, then re-run"
R=$WORK/runs/$RUN; rm -rf "$WORK/runs"
PROP=($LP propagate --cache "$C" --davis "$DAVIS" --out "$WORK/runs" --device cpu --no-progress)
kill_when 'n=$(ls $R/*/.done.json 2>/dev/null | wc -l); [ "$n" -ge 1 ] && [ "$(ls -d $R/*/ 2>/dev/null | wc -l)" -gt "$n" ]' "${PROP[@]}" \
    && pass "propagate killed between sequences" || fail "propagate kill point"
done_seqs=$(for s in $SEQS; do [ -f $R/$s/.done.json ] && echo $s; done)
stamp=$(for s in $done_seqs; do mtime $R/$s/*.png; done)
"${PROP[@]}" >/dev/null 2>&1
check "propagate re-run left finished sequences untouched" test "$stamp" = "$(for s in $done_seqs; do mtime $R/$s/*.png; done)"
$LP propagate --cache "$C" --davis "$DAVIS" --out "$WORK/clean-runs" --device cpu --no-progress >/dev/null 2>&1
check "resumed masks identical to an uninterrupted run" diff -r -x .done.json -x run.json "$R" "$WORK/clean-runs/$RUN"

echo "== 3. SIGKILL during sweep, then re-run"
S=$WORK/sweep; rm -rf "$S"
SWEEP=($LP sweep --cache "$C" --davis "$DAVIS" --out "$S" --temperature 0.7,0.1 --device cpu --no-progress)
kill_when 'ls $S/shards/$BID/*.json >/dev/null 2>&1' "${SWEEP[@]}" && pass "sweep killed after its first shard" \
    || fail "sweep kill point"
shards=$(ls $S/shards/$BID/*.json); stamp=$(mtime $shards)
"${SWEEP[@]}" >/dev/null 2>&1
check "sweep re-run kept the finished shards" test "$stamp" = "$(mtime $shards)"
check "sweep_results.csv has both settings" test "$(grep -c '^'"$BID" "$S/sweep_results.csv")" = 2

echo "== 4. broken cache files"
B=$WORK/broken/$BID; rm -rf "$WORK/broken"; mkdir -p "$WORK/broken"; cp -r "$C" "$B"
$PY - "$B" <<'EOF'
import os, sys, h5py
folder = sys.argv[1]
path = os.path.join(folder, "synthetic-00.h5"); os.truncate(path, os.path.getsize(path) // 2)
with open(os.path.join(folder, "synthetic-01.h5"), "r+b") as handle: handle.write(b"\0" * 8)
with h5py.File(os.path.join(folder, "synthetic-02.h5"), "r+") as handle: handle.attrs["format_version"] = 99
EOF
$LP cache verify "$B" >"$WORK/verify.out" 2>&1; rc=$?
check "cache verify exits 1 and names 3 bad files" bash -c "[ $rc = 1 ] && [ \$(grep -c '^BAD' $WORK/verify.out) = 3 ]"
$LP propagate --cache "$B" --davis "$DAVIS" --out "$WORK/broken-runs" --device cpu --no-progress >/dev/null 2>"$WORK/p.err"
check "propagate refuses it with a one-line Error:" bash -c "head -c 7 $WORK/p.err | grep -q 'Error: ' && ! grep -q Traceback $WORK/p.err"

echo "== 5. a full disk (every file limited to 64 kB / 600 B)"
$PY - "$DAVIS" "$WORK/full" "$C" <<'EOF'
import resource, signal, subprocess, sys
davis, work, cache = sys.argv[1:4]
def limit(n):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return apply
for name, args, n in (("extract", ["extract", "--davis", davis, "--cache", work + "/cache", "--protocol", "native",
                                   "--num-workers", "0"], 64 * 1024),
                      ("propagate", ["propagate", "--cache", cache, "--davis", davis, "--out", work + "/runs",
                                     "--device", "cpu", "--no-progress"], 600)):
    r = subprocess.run([sys.executable, "-m", "lpcache.cli", *args], capture_output=True, text=True, preexec_fn=limit(n))
    ok = r.returncode == 1 and r.stderr.startswith("Error: ") and "Traceback" not in r.stderr
    print(("PASS" if ok else "FAIL") + f"  {name} on a full disk: rc {r.returncode}, "
          + (r.stderr.strip().splitlines() or ["(no stderr)"])[-1][:200])
EOF
[ $? = 0 ] || FAILED=1

echo "== 6. two concurrent sweeps on one output folder"
S2=$WORK/sweep2; rm -rf "$S2"
CONC=($LP sweep --cache "$C" --davis "$DAVIS" --out "$S2" --temperature 0.7,0.1 --device cpu --no-progress)
"${CONC[@]}" >"$WORK/c1.out" 2>&1 & p1=$!
"${CONC[@]}" >"$WORK/c2.out" 2>&1 & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
check "both sweeps finished (rc $r1, $r2)" bash -c "[ $r1 = 0 ] && [ $r2 = 0 ]"
check "no stray .partial, same results as the single sweep" bash -c \
    "! ls $S2/shards/$BID/*.partial 2>/dev/null && diff $S/sweep_results.csv $S2/sweep_results.csv"

echo "== done; outputs in $WORK"
exit $FAILED

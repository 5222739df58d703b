# Sourced by the GPU scripts: install the wheels the device image lacks (.whl/, carried by the
# device tool; made by `bash bench/gpu_wheels.sh quality`) into /tmp/site once, and put them and
# the repository on PYTHONPATH.
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 DO_NOT_TRACK=true
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && [ ! -f /tmp/site/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  touch /tmp/site/.installed
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
GPU_WORKERS=${GPU_WORKERS:-$(( $(nproc) > 12 ? 12 : $(nproc) ))}
export GPU_WORKERS
# _copy_results PATTERN: copy what exists of bench/results/PATTERN to $OUT. Never fails: under
# the callers' `set -e` a failed copy before the first result exists ended the script at its
# first tick and the results never came back (H100 run of 2026-11-27, docs/benchmarks.md)
_copy_results() {
  if [ -n "${OUT:-}" ]; then cp bench/results/$1 "$OUT"/ 2>/dev/null || true; fi
}
# copy_out PID PATTERN: while PID runs, copy the results matching PATTERN to $OUT every COPY_EVERY (10) s,
# so a run cut short by the device's time limit still returns what it finished
copy_out() {
  while kill -0 "$1" 2>/dev/null; do
    sleep "${COPY_EVERY:-10}"
    _copy_results "$2"
  done
  local rc=0
  wait "$1" || rc=$?
  _copy_results "$2"
  return $rc
}

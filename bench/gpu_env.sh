# Sourced by the GPU scripts: install the wheels the device image lacks (.whl/, carried by the
# device tool) into /tmp/site once, and put them and the repository on PYTHONPATH.
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 DO_NOT_TRACK=true
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && [ ! -f /tmp/site/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  touch /tmp/site/.installed
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
GPU_WORKERS=${GPU_WORKERS:-$(( $(nproc) > 12 ? 12 : $(nproc) ))}
export GPU_WORKERS
# copy_out PID PATTERN: while PID runs, copy the results matching PATTERN to $OUT every 10 s,
# so a run cut short by the device's time limit still returns what it finished
copy_out() {
  while kill -0 "$1" 2>/dev/null; do
    sleep 10
    [ -n "${OUT:-}" ] && cp bench/results/$2 "$OUT"/ 2>/dev/null
  done
  local rc=0
  wait "$1" || rc=$?
  [ -n "${OUT:-}" ] && cp bench/results/$2 "$OUT"/ 2>/dev/null
  return $rc
}

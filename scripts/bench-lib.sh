# Timing helpers the benchmark scripts share (sourced, not run): `elapsed
# CMD...` runs CMD quietly and prints its wall time in seconds (on failure it
# shows CMD's stderr and fails); `median X...` prints the median. Callers set
# BENCH_DIR (where the last command's stderr is kept).
now() { date +%s.%N; }
elapsed() {
  local t0 t1
  t0=$(now)
  "$@" >/dev/null 2>"$BENCH_DIR/last.err" || { cat "$BENCH_DIR/last.err" >&2; return 1; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }

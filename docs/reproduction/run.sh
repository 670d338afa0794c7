#!/usr/bin/env bash
# The reproduction behind docs/reproduction.md: every figure of its tables comes from the --json
# files this script writes beside it (python docs/reproduction/summarise.py prints the tables).
#   bash docs/reproduction/run.sh first    # the first pass: reduced early stopping, LHCb's noisy cells
#   bash docs/reproduction/run.sh second   # the second pass: the paper's early stopping, the paper's
#                                          # noiseless cells, Figure 18 larger, a grid slice selected
#                                          # (second-a, second-b: one of its two streams)
# Two streams of one torch thread each (the machine has 2 cores). sample-cpu.sh, run beside it, logs
# each process's CPU time (cpu.tsv). Each command's wall time and the load average go to timings.tsv.
# Run from the repository root with `robust` on the PATH (or ROBUST=/path/to/robust).
# Everything is resumable: a second run trains nothing and rewrites the same JSON, and each step's
# JSON lands the moment the step ends, so an interrupted pass keeps what it finished.
set -u
OUTDIR=docs/reproduction
ROBUST=${ROBUST:-robust}
LOGDIR=${LOGDIR:-mlruns/repro-logs}
# the reduced early stopping (the paper: min 100, window 30, threshold 0.10, max 500)
STOP="--min-epochs 15 --window 10 --threshold 0.10 --max-epochs 30 --threads 1"
# the first pass ran on the noisy cells that were the default then (LHCb's electronic noise)
A="--task calo-energy -o dataset=A -o events=100000 -o noise=lhcb --study repro-A $STOP"
B="--task calo-energy -o dataset=B -o events=100000 -o noise=lhcb --study repro-B $STOP"
# the second pass: the paper's cells (no electronic noise, the default since) and, unless a step
# says otherwise, every command's default early stopping, the paper's (min 100, window 30, 10 %, max 500)
A2="--task calo-energy -o dataset=A -o events=100000 -o noise=0 --threads 1"
B2="--task calo-energy -o dataset=B -o events=100000 -o noise=0 --threads 1"

step() {  # step NAME COMMAND...: run one command, its JSON to $OUTDIR/NAME.json, its wall time to timings.tsv
  local name=$1; shift
  local t0 l0 t1 l1 rc
  t0=$(date +%s); l0=$(cut -d' ' -f1 /proc/loadavg)
  nice -n 10 $ROBUST "$@" --json >"$OUTDIR/$name.json" 2>"$LOGDIR/$name.err"; rc=$?
  t1=$(date +%s); l1=$(cut -d' ' -f1 /proc/loadavg)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$(date -d @"$t0" +%FT%T)" "$((t1 - t0))" "$l0" "$l1" "$rc" >>"$OUTDIR/timings.tsv"
}

stream_a() {
  # Figures 4-5: Models 1 and 2 and the baselines at 4 log-spaced sizes 100..2,675, 6 instances each
  step sample-size-A study sample-size $A -C model1 -C model2 --sizes 100,299,894,2675 -n 6
  # Figure 6: Model 2 against the baselines at 2,675 (reused), 8,000 and 16,000
  step sample-size-A-large study sample-size $A -C model2 --sizes 2675,8000,16000 -n 6
  # the selection itself: `make demo`'s study file (8 sampled candidates, samples of 2,000, 20-40 epochs)
  step select-baseline baseline -c examples/studies/demo.toml --instances 5
  step select-demo select -c examples/studies/demo.toml --threads 1
  step select-model2 assess -c examples/studies/demo.toml --candidate model2 --instances 5 --threads 1
}

stream_b() {
  # Figure 7: both seeds / only the initialisation / only the sample, 20 instances each, samples of 1,000
  step variance-B-model2 study variance $B -C model2 -n 20 --train-size 1000
  step variance-B-model1 study variance $B -C model1 -n 8 --train-size 1000
  # Figure 18: 12 TPE trials on samples of 1,000, the 2 best picks and Model 2 over 6 fresh instances each
  step nas-B nas $B --train-size 1000 --trials 12 --top 2 -n 6 --against model2 --sampler tpe
  # the paper's own NAS picks (its Table 3: nas1, nas2) and Model 2 on samples of 4,000 (its Figure 18:
  # 8,000-32,000). This search's picks lie outside the grid, which `robust assess` cannot name yet.
  step nas-B-4000-model2 assess $B --train-size 4000 -n 6 --candidate model2
  step nas-B-4000-nas1 assess $B --train-size 4000 -n 6 --candidate nas1
  step nas-B-4000-nas2 assess $B --train-size 4000 -n 6 --candidate nas2
}

second_a() {
  # Figure 7 at the paper's early stopping: Model 2, then Model 1, dataset B, samples of 1,000
  step variance-B-model2-paper study variance $B2 --study repro2-B -C model2 -n 20 --train-size 1000
  step variance-B-model1-paper study variance $B2 --study repro2-B -C model1 -n 12 --train-size 1000
  # and dataset A beside it
  step variance-A-model2-paper study variance $A2 --study repro2-A -C model2 -n 12 --train-size 1000
}

second_b() {
  # Figure 6 on the paper's noiseless cells, at the first pass's settings (reduced early stopping),
  # beside its noisy run (sample-size-A-large.json): Model 2 and the baselines
  step sample-size-A-large-noiseless study sample-size $A2 --study repro2-A-reduced $STOP -C model2 \
    --sizes 2675,8000,16000 -n 6
  # the selection on a slice of the grid: 64 of the 6,912 drawn at random (seed 1), samples of
  # 1,000, the reduced early stopping; the baselines for the paper's cut, then the paper's rule and
  # the race on the same instances; each pick and Model 2 then over 10 fresh instances (study seed 2:
  # seeds derive from the study seed and the instance index, so seed 1's would repeat the selection's)
  local G="$A2 --study repro2-grid $STOP --train-size 1000"
  # (the baselines on the selection's samples: the same study seed)
  step grid-baseline baseline --task calo-energy -o dataset=A -o events=100000 -o noise=0 --study repro2-grid \
    --train-size 1000 --instances 5 --seed 1
  step grid-select-paper select $G --sample 64 --seed 1 --rule paper --final-instances 5
  step grid-select-race select $G --sample 64 --seed 1 --rule race --final-instances 5
  local F="$A2 --study repro2-grid-fresh $STOP --train-size 1000 --seed 2 -n 10"
  step grid-fresh-model2 assess $F --candidate model2
  for rule in paper race; do
    local pick
    pick=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['selected'])" \
      "$OUTDIR/grid-select-$rule.json" 2>/dev/null) || continue
    step "grid-fresh-$rule" assess $F --candidate "$pick"
  done
  # Figure 18 at the paper's early stopping: its NAS 1, NAS 2 and Model 2, 6 instances each
  for size in 4000 16000; do
    for c in model2 nas1 nas2; do
      step "nas-B-$size-$c-paper" assess $B2 --study repro2-B --train-size $size -n 6 --candidate $c
    done
  done
  # Figure 6 on noiseless cells again, Model 2 at the paper's early stopping (the baselines have none)
  step sample-size-A-large-noiseless-paper study sample-size $A2 --study repro2-A -C model2 --sizes 8000,16000 -n 6
}

mkdir -p "$LOGDIR"
[ -f "$OUTDIR/timings.tsv" ] || printf 'step\tstart\twall_s\tload_start\tload_end\trc\n' >"$OUTDIR/timings.tsv"
T0=$(date +%s)
case "${1:-second}" in
  first) stream_a & PA=$!; stream_b & PB=$! ;;
  second) second_a & PA=$!; second_b & PB=$! ;;
  second-a) second_a & PA=$!; PB= ;;  # one stream alone (e.g. to finish it after an interruption)
  second-b) second_b & PA=$!; PB= ;;
  *) echo "usage: bash docs/reproduction/run.sh first|second|second-a|second-b" >&2; exit 2 ;;
esac
wait $PA $PB
printf 'total %s\t%s\t%s\t-\t%s\t0\n' "${1:-second}" "$(date -d @"$T0" +%FT%T)" "$(($(date +%s) - T0))" "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUTDIR/timings.tsv"

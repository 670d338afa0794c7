#!/usr/bin/env bash
# every 5 s: time, pid, CPU ticks (utime+stime+children, 1/100 s) and the command of every robust process
# that trains (the reproduction ran it beside run.sh: sample-cpu.sh > mlruns/repro-logs/cpu.log)
while true; do
  # `robust` as a console script or as `python -c "from robustcli.cli.main import main; main()"`
  for p in $(pgrep -f "(bin/robust|robustcli.cli.main import main; main\(\)) (study|nas|select|assess|baseline)"); do
    [ -r /proc/$p/stat ] || continue
    read -r -a f < <(sed 's/^.*) //' /proc/$p/stat)
    # fields after comm: state=0 ... utime=11 stime=12 cutime=13 cstime=14 (0-based after comm)
    t=$(( ${f[11]} + ${f[12]} + ${f[13]} + ${f[14]} ))
    echo "$(date +%s) $p $t $(tr '\0' ' ' < /proc/$p/cmdline | grep -oE '(study (sample-size|variance)|nas|select|assess|baseline) .*')"
  done
  sleep 5
done

#!/bin/bash
# ab.sh OUT ROUNDS LOAD... : alternates old (9101) and new (9102) for each load; each run waits
# for a quiet machine and is retried (up to 3 times) when other processes used >= 0.1 cores.
out=$1; rounds=$2; shift 2
for k in $(seq 1 $rounds); do
  for load in "$@"; do
    for s in old:9101 new:9102; do
      n=${s%%:*}; p=${s##*:}
      case $load in
        u*) a="--users ${load#u}";;
        *) a="--rate $load";;
      esac
      for try in 1 2 3; do
        results/2core-poisson/quiet.sh 300 >/dev/null 2>&1
        line=$(python3 results/2core-poisson/measure.py $p $n-$load -- $a --duration ${DUR:-8} --warmup ${WARM:-2})
        o=$(echo "$line" | sed -E 's/.*others ([0-9.]+) cores.*/\1/')
        echo "$(date +%T) round $k try $try $line" >> $out
        awk -v o=$o 'BEGIN{exit !(o < 0.1)}' && break
      done
    done
  done
done

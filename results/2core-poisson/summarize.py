import re, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.search(r'round (\d+) try (\d+) (\w+)-(\w+)\s+(open|closed)\s+thr\s+([\d.]+)\s+p50\s+([\d.]+) p90\s+([\d.]+) p99\s+([\d.]+) err (\d+).*widths (\{[^}]*\}).*core-busy ([\d.]+).*others (-?[\d.]+)', line)
    if not m: continue
    rnd, tr, srv, load, mode, thr, p50, p90, p99, err, widths, busy, others = m.groups()
    rows[(load, srv)].append((float(others), float(thr), float(p50), float(p99), int(err), widths, busy, rnd))
order = ['u1','108','215','280','345','u16','u64']
for load in order:
    for srv in ('old','new'):
        runs = rows.get((load, srv), [])
        ok = [r for r in runs if r[0] < 0.1]
        if not runs: continue
        fmt = lambda rs, i: ", ".join(f"{r[i]:.1f}" for r in rs)
        print(f"{load:>4} {srv}: valid {len(ok)}/{len(runs)} | thr {fmt(ok,1)} | p50 {fmt(ok,2)} | p99 {fmt(ok,3)} | err {sum(r[4] for r in ok)} | busy {' '.join(r[6] for r in ok)} | widths {' '.join(r[5] for r in ok)}")

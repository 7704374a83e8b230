use super::*;

#[test]
fn elastic_ladders() {
    let two = Ladder::elastic(2);
    assert_eq!(
        two.rungs,
        vec![
            Rung {
                width: 1,
                sessions: 2
            },
            Rung {
                width: 2,
                sessions: 1
            }
        ]
    );
    assert_eq!(two.copies(), 3);
    let widths = |l: &Ladder| {
        l.rungs
            .iter()
            .map(|r| (r.width, r.sessions))
            .collect::<Vec<_>>()
    };
    assert_eq!(widths(&Ladder::elastic(1)), vec![(1, 1)]);
    assert_eq!(
        widths(&Ladder::elastic(6)),
        vec![(1, 6), (2, 3), (4, 1), (6, 1)]
    );
    assert_eq!(
        widths(&Ladder::elastic(16)),
        vec![(1, 16), (2, 8), (4, 4), (8, 2), (16, 1)]
    );
    assert_eq!(Ladder::elastic(16).max_concurrent(), 16);
}

#[test]
fn elastic_auto_uses_available_cpus() {
    let c = crate::Config::parse("").unwrap();
    assert_eq!(Ladder::from_config(&c.executor, 4).cores, 4);
    let c = crate::Config::parse("[executor]\ncores = 3\n").unwrap();
    assert_eq!(Ladder::from_config(&c.executor, 64).cores, 3);
}

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v / 1000.0)
}

/// Costs like those measured on the 2-core machine: a pass on one core 2 ms plus 0.17 ms
/// per padded token, on two cores 0.55 ms plus 0.1 ms.
fn two_core_costs(now: Instant) -> Costs {
    let mut c = Costs::new([1, 2]);
    for tokens in [8, 16, 32, 64, 128, 256] {
        c.record(1, tokens, ms(2.0 + 0.17 * tokens as f64), 0, now);
        c.record(2, tokens, ms(0.55 + 0.1 * tokens as f64), 0, now);
    }
    c
}

/// A batch of `rows` rows padded to `tokens` in all, nothing queued behind it.
fn lone(free: usize, rows: usize, tokens: usize, rate: f64) -> Moment {
    Moment {
        free,
        pending: 0,
        rows,
        tokens,
        rate,
        typical_tokens: 26,
        load: 0.0,
    }
}

#[test]
fn fixed_is_one_rung() {
    let c = crate::Config::parse(
        "[executor]\nparallelism = \"fixed\"\nsessions = 3\nintra_op_threads = 2\n",
    )
    .unwrap();
    let l = Ladder::from_config(&c.executor, 64);
    assert_eq!((l.cores, l.copies(), l.max_concurrent()), (6, 3, 3));
    let now = Instant::now();
    let costs = Costs::new([2]);
    // Whatever the moment, a fixed batch gets intra_op_threads cores.
    for (free, pending, rate) in [(2, 0, 0.0), (6, 0, 500.0), (6, 5, 0.0), (1, 9, 9.0)] {
        let m = Moment {
            pending,
            ..lone(free, 1, 14, rate)
        };
        assert_eq!(choose(&l, &m, &costs, now), 2);
    }
}

#[test]
fn before_any_batch_ran_a_lone_batch_gets_every_idle_core() {
    let now = Instant::now();
    let costs = Costs::new([1, 2, 4, 8, 16]);
    let l = Ladder::elastic(16);
    assert_eq!(choose(&l, &lone(16, 1, 14, 1000.0), &costs, now), 16);
    // Idle cores that are not a rung: the widest rung that fits.
    assert_eq!(choose(&l, &lone(11, 1, 14, 0.0), &costs, now), 8);
}

#[test]
fn queued_batches_share_the_idle_cores() {
    let now = Instant::now();
    let queued = |free, pending| Moment {
        pending,
        ..lone(free, 1, 14, 0.0)
    };
    let l = Ladder::elastic(2);
    let costs = two_core_costs(now);
    assert_eq!(choose(&l, &queued(2, 1), &costs, now), 1, "side by side");
    assert_eq!(choose(&l, &queued(1, 0), &costs, now), 1, "one core busy");
    let l = Ladder::elastic(16);
    let costs = Costs::new([1, 2, 4, 8, 16]);
    assert_eq!(choose(&l, &queued(16, 1), &costs, now), 8);
    assert_eq!(choose(&l, &queued(16, 3), &costs, now), 4);
    assert_eq!(choose(&l, &queued(16, 40), &costs, now), 1);
    assert_eq!(choose(&l, &queued(3, 0), &costs, now), 2);
}

#[test]
fn sparse_arrivals_a_lone_batch_gets_every_core() {
    let now = Instant::now();
    let (l, costs) = (Ladder::elastic(2), two_core_costs(now));
    for tokens in [6, 14, 60, 256] {
        let m = lone(2, 1, tokens, 2.0);
        assert_eq!(choose(&l, &m, &costs, now), 2, "{tokens} tokens");
    }
    // A batch of several rows too.
    assert_eq!(choose(&l, &lone(2, 8, 8 * 20, 2.0), &costs, now), 2);
}

#[test]
fn dense_arrivals_a_long_batch_leaves_a_core() {
    let now = Instant::now();
    let (l, costs) = (Ladder::elastic(2), two_core_costs(now));
    // 300 rows a second: a 256-token row on both cores (about 26 ms) would hold up the
    // eight rows due meanwhile; on one core (about 46 ms) it leaves them the other.
    assert_eq!(choose(&l, &lone(2, 1, 256, 300.0), &costs, now), 1);
    // A short row is over before the next arrival is likely: it still takes both.
    assert_eq!(choose(&l, &lone(2, 1, 14, 300.0), &costs, now), 2);
    // As arrivals thin out, the long row takes both cores again.
    assert_eq!(choose(&l, &lone(2, 1, 256, 40.0), &costs, now), 2);
}

#[test]
fn where_wide_passes_are_no_faster_a_lone_batch_stays_narrow_under_load() {
    // Another process on the second core: two-core passes take as long as one-core ones.
    let now = Instant::now();
    let mut costs = Costs::new([1, 2]);
    for tokens in [8, 32, 128] {
        costs.record(1, tokens, ms(2.0 + 0.17 * tokens as f64), 0, now);
        costs.record(2, tokens, ms(2.0 + 0.17 * tokens as f64), 0, now);
    }
    let l = Ladder::elastic(2);
    assert_eq!(choose(&l, &lone(2, 1, 14, 100.0), &costs, now), 1);
    // Alone with nobody arriving, ties go to the wider width.
    assert_eq!(choose(&l, &lone(2, 1, 14, 0.0), &costs, now), 2);
}

#[test]
fn where_wide_passes_cost_more_core_time_moderate_load_stays_narrow() {
    // The fixed part of a pass (2.1 ms) does not spread over cores: a short row on two
    // cores takes 3.4 ms against 4.5 ms on one, half again the core-time.
    let now = Instant::now();
    let mut costs = Costs::new([1, 2]);
    for tokens in [8, 32, 128] {
        costs.record(1, tokens, ms(2.1 + 0.171 * tokens as f64), 0, now);
        costs.record(2, tokens, ms(2.1 + 0.092 * tokens as f64), 0, now);
    }
    let l = Ladder::elastic(2);
    // A tenth of the bench's rate: finishing sooner is worth the core-time.
    assert_eq!(choose(&l, &lone(2, 1, 14, 40.0), &costs, now), 2);
    // Half of it (about 215 rows a second): the cores are needed, it stays narrow.
    assert_eq!(choose(&l, &lone(2, 1, 14, 215.0), &costs, now), 1);
}

#[test]
fn above_half_load_a_lone_batch_leaves_room_unless_it_is_a_closed_loop() {
    let now = Instant::now();
    let (l, costs) = (Ladder::elastic(2), two_core_costs(now));
    // Costs alone would put a short row on both cores at 200 rows a second.
    assert_eq!(choose(&l, &lone(2, 1, 14, 200.0), &costs, now), 2);
    let loaded = |rate, load| Moment {
        load,
        ..lone(2, 1, 14, rate)
    };
    assert_eq!(choose(&l, &loaded(200.0, 0.4), &costs, now), 2);
    assert_eq!(choose(&l, &loaded(200.0, 0.6), &costs, now), 1);
    // One user sending back to back: the cores are 90% busy, and nothing arrives
    // while a batch runs.
    assert_eq!(choose(&l, &loaded(0.0, 0.9), &costs, now), 2);
    // Many cores: the more load, the fewer for a lone batch.
    let l = Ladder::elastic(16);
    let costs = Costs::new([1, 2, 4, 8, 16]);
    let mut costs16 = costs.clone();
    costs16.record(1, 16, ms(4.0), 0, now);
    let wide = |load| {
        choose(
            &l,
            &Moment {
                free: 16,
                ..loaded(2000.0, load)
            },
            &costs16,
            now,
        )
    };
    assert_eq!(wide(0.3), 16);
    assert_eq!(wide(0.7), 8);
    assert_eq!(wide(0.95), 1);
}

#[test]
fn many_cores_dense_arrivals_narrow_a_lone_batch() {
    // Passes scale with cores up to four, then barely: 16 cores are hardly faster than 4.
    let now = Instant::now();
    let l = Ladder::elastic(16);
    let mut costs = Costs::new([1, 2, 4, 8, 16]);
    for (w, speedup) in [(1, 1.0), (2, 1.9), (4, 3.4), (8, 3.9), (16, 4.0)] {
        for tokens in [8, 32, 128] {
            costs.record(w, tokens, ms((1.0 + 0.2 * tokens as f64) / speedup), 0, now);
        }
    }
    assert_eq!(choose(&l, &lone(16, 1, 14, 1.0), &costs, now), 16);
    let busy = choose(&l, &lone(16, 1, 14, 3000.0), &costs, now);
    assert!(busy < 16, "{busy}");
}

#[test]
fn the_rate_follows_steady_arrivals_and_fades_after_a_pause() {
    let (mut a, t0) = (Arrivals::new(), Instant::now());
    assert_eq!(a.rate(t0), 0.0);
    assert_eq!(a.typical_tokens(), 1);
    // 200 rows a second, 5 ms apart, for two seconds.
    let mut t = t0;
    for _ in 0..400 {
        t += Duration::from_millis(5);
        a.observe(20, t);
    }
    let r = a.rate(t);
    assert!((r - 200.0).abs() < 20.0, "{r}");
    assert_eq!(a.typical_tokens(), 20);
    let later = t + Duration::from_secs(3);
    assert!(a.rate(later) < 1.0, "{}", a.rate(later));
}

use super::*;
use crate::metrics::Metrics;
use std::net::Ipv4Addr;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

fn registry(total: usize, per_client: Option<usize>) -> (Arc<Registry>, Metrics) {
    let metrics = Metrics::new("test", "model");
    let caps = Caps { total, per_client };
    (Registry::new(caps, metrics.connections.clone()), metrics)
}

fn closing(a: &Admitted) -> bool {
    a.close.is_cancelled()
}

fn shed(m: &Metrics, reason: ShedReason) -> u64 {
    m.connections
        .shed
        .with_label_values(&[reason.as_str()])
        .get()
}

fn refused(m: &Metrics, reason: RefuseReason) -> u64 {
    m.connections
        .refused
        .with_label_values(&[reason.as_str()])
        .get()
}

#[test]
fn below_the_cap_everyone_is_admitted_and_nobody_shed() {
    let (r, m) = registry(3, None);
    let conns: Vec<_> = (0..3).map(|_| r.admit(A).unwrap()).collect();
    assert!(conns.iter().all(|c| !closing(c)));
    assert_eq!(r.open(), 3);
    assert_eq!(m.connections.open.get(), 3);
    drop(conns);
    assert_eq!(r.open(), 0);
    assert_eq!(m.connections.open.get(), 0);
}

#[test]
fn at_the_cap_the_connection_idle_longest_is_shed() {
    let (r, m) = registry(3, None);
    let first = r.admit(A).unwrap();
    let second = r.admit(A).unwrap();
    let third = r.admit(A).unwrap();
    // `first` serves a request now, so it became idle after the two silent ones.
    drop(first.request());
    let fourth = r.admit(B).unwrap();
    assert!(
        closing(&second),
        "the silent connection accepted first goes first"
    );
    assert!(!closing(&first) && !closing(&third) && !closing(&fourth));
    let fifth = r.admit(B).unwrap();
    assert!(closing(&third));
    let _sixth = r.admit(B).unwrap();
    assert!(closing(&first), "then the keep-alive one");
    assert!(!closing(&fourth) && !closing(&fifth));
    assert_eq!(r.open(), 3);
    assert_eq!(shed(&m, ShedReason::Header), 2);
    assert_eq!(shed(&m, ShedReason::Idle), 1);
    // Dropping a shed connection later frees nothing twice.
    drop((first, second, third));
    assert_eq!(r.open(), 3);
    assert_eq!(m.connections.open.get(), 3);
}

#[test]
fn busy_connections_are_never_shed_and_all_busy_means_refused() {
    let (r, m) = registry(2, None);
    let a = r.admit(A).unwrap();
    let b = r.admit(A).unwrap();
    let busy_a = a.request();
    let busy_b = b.request();
    assert_eq!(r.admit(B).err(), Some(RefuseReason::Busy));
    assert_eq!(refused(&m, RefuseReason::Busy), 1);
    assert!(!closing(&a) && !closing(&b));
    // Two requests on one connection (HTTP/2 streams): idle only when both end.
    let busy_b2 = b.request();
    drop(busy_b);
    assert_eq!(r.admit(B).err(), Some(RefuseReason::Busy));
    drop(busy_b2);
    let _c = r.admit(B).unwrap();
    assert!(closing(&b) && !closing(&a));
    drop(busy_a);
}

#[test]
fn a_request_on_a_shed_connection_changes_nothing() {
    let (r, _m) = registry(1, None);
    let a = r.admit(A).unwrap();
    let b = r.admit(A).unwrap();
    assert!(closing(&a));
    // A request that slipped in before `a` closed: served, but `b` stays the only entry
    // and can still be shed.
    let late = a.request();
    drop(late);
    let _c = r.admit(A).unwrap();
    assert!(closing(&b));
    assert_eq!(r.open(), 1);
}

#[test]
fn the_per_client_cap_refuses_only_that_address() {
    let (r, m) = registry(10, Some(2));
    let a1 = r.admit(A).unwrap();
    let _a2 = r.admit(A).unwrap();
    assert_eq!(r.admit(A).err(), Some(RefuseReason::PerClient));
    assert_eq!(refused(&m, RefuseReason::PerClient), 1);
    let _b = r.admit(B).unwrap();
    assert_eq!(shed(&m, ShedReason::Header) + shed(&m, ShedReason::Idle), 0);
    drop(a1);
    r.admit(A)
        .expect("a place for A again once one of its connections closed");
}

#[test]
fn close_all_asks_every_connection_to_close() {
    let (r, _m) = registry(10, None);
    let conns: Vec<_> = (0..4).map(|_| r.admit(A).unwrap()).collect();
    let _busy = conns[0].request();
    r.close_all();
    assert!(conns.iter().all(closing));
}

#[test]
fn shedding_order_follows_when_each_connection_became_idle() {
    let (r, _m) = registry(4, None);
    let c: Vec<_> = (0..4).map(|_| r.admit(A).unwrap()).collect();
    // 1 and 2 never sent a request; 3 finished one, then 0 did.
    drop(c[3].request());
    drop(c[0].request());
    let mut shed_order = Vec::new();
    let mut newcomers = Vec::new();
    for _ in 0..4 {
        newcomers.push(r.admit(B).unwrap());
        let next = (0..4).find(|&i| closing(&c[i]) && !shed_order.contains(&i));
        shed_order.push(next.expect("one more shed per newcomer"));
    }
    assert_eq!(shed_order, [1, 2, 3, 0]);
    assert!(newcomers.iter().all(|n| !closing(n)));
}

#[test]
fn reused_connections_go_after_every_other_idle_one() {
    let (r, m) = registry(3, None);
    let pooled = r.admit(A).unwrap();
    drop(pooled.request());
    drop(pooled.request());
    // Newer than `pooled`'s last request, but fresh or used once: shed first.
    let once = r.admit(B).unwrap();
    drop(once.request());
    let silent = r.admit(B).unwrap();
    let _n1 = r.admit(B).unwrap();
    assert!(closing(&once) && !closing(&pooled) && !closing(&silent));
    let _n2 = r.admit(B).unwrap();
    assert!(closing(&silent) && !closing(&pooled));
    // Only then, with no other idle connection left, the reused one (idle longest).
    let _n3 = r.admit(B).unwrap();
    assert!(
        !closing(&pooled),
        "the newest connection goes before a reused one"
    );
    assert_eq!(shed(&m, ShedReason::Idle), 1);
}

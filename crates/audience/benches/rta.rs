//! Criterion: one RTA decision on a 1 M-user index (member, stranger), and the hex
//! parse of a device id. The full figures (10 M users, memory, HTTP with wrk) come from
//! `cargo run --release -p jingteng-audience --example rta_bench`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jingteng_audience::rta::{CampaignList, DeviceMd5, LiveIndex, RtaIndex};
use jingteng_psi::DeviceType;

fn imei(prefix: u32, i: u64) -> DeviceMd5 {
    DeviceMd5::of_device(DeviceType::Imei, &format!("{prefix}{i:013}")).unwrap()
}

fn bench(c: &mut Criterion) {
    // CI smoke-runs benches at a tiny size: JT_BENCH_USERS=1000.
    let users: u64 = std::env::var("JT_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let members: Vec<DeviceMd5> = (0..users).map(|i| imei(86, i)).collect();
    let probe_in: Vec<DeviceMd5> = members.iter().step_by(7).take(4096).copied().collect();
    let probe_out: Vec<DeviceMd5> = (0..4096).map(|i| imei(87, i)).collect();
    let (a, b) = members.split_at(members.len() / 2);
    let index = RtaIndex::build(
        vec![
            CampaignList::new("C1")
                .tier(1.0, a.to_vec())
                .tier(2.0, b.to_vec()),
            CampaignList::new("C2").tier(1.5, b.to_vec()),
        ],
        &[],
    )
    .unwrap();
    drop(members);
    let live = LiveIndex::new(index);
    let mut g = c.benchmark_group("rta");
    let mut i = 0usize;
    g.bench_function("decide_member", |bn| {
        bn.iter(|| {
            i = (i + 1) % probe_in.len();
            let s = live.load();
            black_box(s.decide(black_box("C1"), probe_in[i]).map(|d| d.bid()))
        })
    });
    g.bench_function("decide_stranger", |bn| {
        bn.iter(|| {
            i = (i + 1) % probe_out.len();
            let s = live.load();
            black_box(s.decide(black_box("C2"), probe_out[i]).map(|d| d.bid()))
        })
    });
    let hex = probe_in[0].to_hex();
    g.bench_function("parse_hex", |bn| {
        bn.iter(|| black_box(DeviceMd5::parse_hex(black_box(&hex))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

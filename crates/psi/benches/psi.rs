//! Criterion benchmarks of the PSI building blocks, per point, on one core: the curve
//! operations the protocol cannot avoid (hash-to-group, multiplication) next to what it
//! adds (decoding a peer's point, batch encoding, normalisation). `jingteng bench psi`
//! measures the whole pipeline; BENCHMARKING.md has the figures.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jingteng_psi::normalize::normalize;
use jingteng_psi::{BlindedBatch, Channel, DigestKind, Form, IdType, Party, SecretKey};
use rand::SeedableRng;

const N: usize = 1_024;

fn building_blocks(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let key = SecretKey::random(&mut rng);
    let party = Party::new(SecretKey::random(&mut rng));
    let channel = Channel::new("bench", "phone/sha256");
    let digests: Vec<_> = (0..N)
        .map(|i| DigestKind::Sha256.hash(format!("138{i:08}").as_bytes()))
        .collect();
    let points: Vec<_> = digests
        .iter()
        .map(|d| channel.hash_to_group(d.as_bytes()))
        .collect();
    let (_, batch) = party.blind(&channel, &digests, &mut rng).unwrap();
    let wire = batch.encode();
    let phones: Vec<String> = (0..N)
        .map(|i| format!("+86 138-{:04}-{:04}", i / 100, i % 100))
        .collect();

    let mut g = c.benchmark_group("psi");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("hash_to_group", |b| {
        b.iter(|| {
            digests.iter().for_each(|d| {
                black_box(channel.hash_to_group(d.as_bytes()));
            })
        })
    });
    g.bench_function("multiply", |b| {
        b.iter(|| {
            points.iter().for_each(|p| {
                black_box(key.blind(p));
            })
        })
    });
    g.bench_function("decode_peer_points", |b| {
        b.iter(|| black_box(BlindedBatch::decode(&wire).unwrap()))
    });
    g.bench_function("encode_points", |b| {
        b.iter(|| black_box(jingteng_psi::encode(&points)))
    });
    g.bench_function("reblind_batch", |b| {
        b.iter(|| black_box(party.reblind(&batch).unwrap()))
    });
    g.bench_function("blind_batch", |b| {
        b.iter(|| black_box(party.blind(&channel, &digests, &mut rng).unwrap()))
    });
    g.bench_function("normalize_and_digest_phone", |b| {
        b.iter(|| {
            phones.iter().for_each(|p| {
                black_box(normalize(IdType::Phone, Form::Raw, p).digest(DigestKind::Sha256));
            })
        })
    });
    g.finish();
}

criterion_group!(benches, building_blocks);
criterion_main!(benches);

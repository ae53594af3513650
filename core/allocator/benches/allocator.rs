//! Criterion benches behind `corral bench allocator`: representative cells
//! of the Mesos grid (see docs/BENCHMARKS.md for the full table).

use std::time::Duration;

use corral_allocator::bench::{prepare, Kind, Scenario};
use criterion::{criterion_group, criterion_main, Criterion};

fn cycles(c: &mut Criterion) {
    let mut group = c.benchmark_group("allocation_cycle");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (kind, agents, frameworks) in [
        (Kind::Full, 10_000, 1_000),
        (Kind::FullOneRole, 10_000, 1_000),
        (Kind::AllFiltered, 10_000, 1_000),
        (Kind::Idle, 10_000, 1_000),
    ] {
        let mut prepared = prepare(Scenario {
            kind,
            agents,
            frameworks,
        });
        group.bench_function(format!("{}/{agents}x{frameworks}", kind.name()), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| prepared.cycle().0).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, cycles);
criterion_main!(benches);

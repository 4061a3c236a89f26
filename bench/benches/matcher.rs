//! Criterion benchmark: map matching on the 169 km Tahoe course (fixes per second, one core).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flevum_bench::{real_course, synthetic_fixes};
use flevum_engine::core::{Matcher, MatcherConfig};

fn matcher(c: &mut Criterion) {
    let index = match real_course("course_gaia_tahoe_169km_cptr006.gpx") {
        Ok(i) => i,
        Err(e) => {
            eprintln!("SKIP matcher bench: {e}");
            return;
        }
    };
    let riders = synthetic_fixes(&index, 8, 10.0);
    let total: usize = riders.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("matcher");
    group.throughput(Throughput::Elements(total as u64));
    group.bench_function("tahoe_169km_10m_noise", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for fixes in &riders {
                let mut m = Matcher::new(MatcherConfig::default());
                for f in fixes {
                    sum += m.match_fix(&index, f).distance_m;
                }
            }
            std::hint::black_box(sum)
        })
    });
    group.finish();
}

criterion_group!(benches, matcher);
criterion_main!(benches);

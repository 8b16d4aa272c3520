use cophr_protocol::fold::current;
use cophr_protocol::testkit::{bp, Fixture};
use cophr_protocol::{Category, Payload};
use std::time::Instant;
fn main() {
    let n = 100_000u64;
    let mut f = Fixture::new(2, "George");
    let george = f.patient.clone();
    let mut items = Vec::new();
    for i in 0..n {
        let p = if i % 10 == 9 && !items.is_empty() {
            Payload::Amend {
                target: items[(i as usize * 7) % items.len()],
                body: bp(120, 80),
            }
        } else {
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(100 + (i % 80) as i64, 70),
            }
        };
        let v = f.write(&george, p).expect("valid");
        if matches!(v.entry().payload, Payload::Create { .. }) {
            items.push(v.id());
        }
    }
    let mid = f.now - (n * 1000) / 2;
    let viewer = f.record.viewer(&george.actor(), f.now);
    for _ in 0..3 {
        let t = Instant::now();
        let past = f.record.at_time(mid);
        let a = t.elapsed();
        let t = Instant::now();
        let s = current(&past, &viewer);
        let b = t.elapsed();
        let t = Instant::now();
        let s2 = current(&f.record, &viewer);
        let c = t.elapsed();
        println!(
            "at_time {a:?} fold(past) {b:?} items {} ; current {c:?} items {}",
            s.items.len(),
            s2.items.len()
        );
    }
}

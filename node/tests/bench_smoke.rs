//! The host benchmark at tiny sizes, so it cannot rot.

#[allow(dead_code)]
#[path = "../benches/host.rs"]
mod host;

#[test]
fn host_benchmark_runs_at_tiny_sizes() {
    host::run(true);
}

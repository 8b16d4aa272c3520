//! Writes a seeded practice bulk export (NDJSON per type) for the FHIR import benchmark:
//! `fhir_practice DIR PATIENTS OBSERVATIONS_PER_PATIENT [SEED]` (`docs/benchmarks.md`).

use std::path::PathBuf;

use cophr_tests::practice::Practice;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: fhir_practice DIR PATIENTS OBSERVATIONS_PER_PATIENT [SEED]";
    let (Some(dir), Some(patients), Some(obs)) = (
        args.first().map(PathBuf::from),
        args.get(1).and_then(|s| s.parse::<usize>().ok()),
        args.get(2).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let seed = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let mut g = Practice::new(seed);
    g.shared();
    for n in 0..patients {
        g.patient(n, obs);
    }
    g.write(&dir);
    println!(
        "{} resources of {patients} patients in {}",
        g.count(),
        dir.display()
    );
}

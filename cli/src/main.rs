//! `cophr`: a co-produced personal health record, from the command line (see the library,
//! `lib.rs`).

fn main() -> std::process::ExitCode {
    cophr::main()
}

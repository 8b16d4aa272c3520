//! The control socket (`control.sock`, 0600 in a running node's home): any bytes a local
//! process writes to it are read as the node reads them (length prefix, bound, JSON) and a
//! request's argument vector is parsed as the node parses it before running a command.
//! Reading and parsing never panic, whatever arrives; nothing runs here.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cophr::fuzz::control_message(data);
});

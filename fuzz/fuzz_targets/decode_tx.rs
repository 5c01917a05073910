#![no_main]
//! Fuzzes `bcte_types::fuzzing::decode_tx`: no input may panic; accepted inputs are canonical.

libfuzzer_sys::fuzz_target!(|data: &[u8]| bcte_types::fuzzing::decode_tx(data));

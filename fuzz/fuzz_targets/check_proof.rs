#![no_main]
//! Fuzzes `bcte_ledger::fuzzing::check_proof`: no input may panic; accepted proofs are canonical.

libfuzzer_sys::fuzz_target!(|data: &[u8]| bcte_ledger::fuzzing::check_proof(data));

//! The HTTP request parsing: any query string and any `POST /runs` body parse or give a
//! refusal that says why (the server's 400).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ream_request::{query_parameters, RunBody};

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        if let Err(e) = query_parameters(Some(query)) {
            assert!(!e.to_string().is_empty());
        }
    }
    if let Err(e) = RunBody::parse(data) {
        assert!(!e.to_string().is_empty());
    }
});

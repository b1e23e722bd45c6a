//! The HTTP request parsing: any query string and any `POST /runs` body parse or give a
//! 400 that says why.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ream_server::request::{query_parameters, RunBody};

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        if let Err(e) = query_parameters(Some(query)) {
            assert_eq!(e.status().as_u16(), 400, "{e}");
        }
    }
    if let Err(e) = RunBody::parse(data) {
        assert_eq!(e.status().as_u16(), 400, "{e}");
    }
});

//! Spec loading: any text, as YAML, TOML or JSON (the first byte picks), loads or gives
//! located errors. Never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ream_core::load::{load_str, SpecFormat};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let format = match pick % 3 {
        0 => SpecFormat::Yaml,
        1 => SpecFormat::Toml,
        _ => SpecFormat::Json,
    };
    if let Err(errors) = load_str(text, format) {
        // Every error says something.
        assert!(!errors.to_string().trim().is_empty());
    }
});

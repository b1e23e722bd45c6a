//! Parameter binding: any given text, against declarations of every type (single and
//! list, with limits), binds to typed values or gives an error naming the parameter.
#![no_main]
use indexmap::IndexMap;
use libfuzzer_sys::fuzz_target;
use ream_core::params::{bind, Given};
use ream_core::spec::ParameterConfig;

const DECLARED: &str = r#"{
  "s": {"type": "string", "one_of": ["a", "b, c"]},
  "i": {"type": "int", "min": -5, "max": 3000000000},
  "d": {"type": "decimal", "min": "0.01"},
  "f": {"type": "float"},
  "b": {"type": "bool"},
  "day": {"type": "date", "min": "2000-01-01", "max": "2099-12-31"},
  "at": {"type": "timestamp"},
  "ids": {"type": "int", "list": true},
  "days": {"type": "date", "list": true, "required": true}
}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let declared: IndexMap<String, ParameterConfig> = serde_json::from_str(DECLARED).unwrap();
    for name in declared.keys() {
        for given in [Given::Text(text.to_string()), Given::List(text.split('\u{1}').map(String::from).collect())] {
            match bind(&declared, &[(name.clone(), given)]) {
                Ok(bound) => assert!(bound.contains_key(name.as_str()) || !declared[name].required),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
});

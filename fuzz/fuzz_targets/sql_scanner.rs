//! The `:name` scanner, in every dialect: each placeholder it reports binds exactly one
//! value when bound to one, and the text around placeholders survives binding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ream_core::params::{BoundParams, ParamValue};
use ream_core::sql::{bind_into, enclose, placeholders, BoundSql, Dialect};
use ream_core::value::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    for dialect in [Dialect::Sqlite, Dialect::Postgres, Dialect::Mysql] {
        let names = placeholders(sql, dialect);
        let params: BoundParams = names.iter().map(|n| (n.clone(), ParamValue::One(Value::Int(1)))).collect();
        let mut out = BoundSql::default();
        bind_into(&mut out, sql, &params, dialect);
        assert_eq!(out.values.len(), names.len(), "{dialect:?}: one value per placeholder in {sql:?}");
        // Without placeholders, binding changes nothing.
        if names.is_empty() {
            assert_eq!(out.sql, sql, "{dialect:?}");
        }
        let wrapped = enclose(sql);
        assert!(wrapped.starts_with('(') && wrapped.ends_with("\n)"));
    }
});

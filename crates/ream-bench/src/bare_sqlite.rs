//! The physical limit for an export from SQLite: step through every row of a table and
//! touch every column, with nothing else. ream's CSV export is measured against this.
//!
//! Usage: bare-sqlite DB.sqlite TABLE

use std::time::Instant;

use rusqlite::types::ValueRef;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: bare-sqlite DB.sqlite TABLE");
        std::process::exit(2);
    }
    let conn =
        rusqlite::Connection::open_with_flags(&args[1], rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let t = Instant::now();
    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"", args[2].replace('"', "\"\""))).expect("prepare");
    let cols = stmt.column_count();
    let mut rows = stmt.raw_query();
    let (mut n, mut ints, mut bytes, mut reals) = (0u64, 0i64, 0usize, 0f64);
    while let Some(row) = rows.next().expect("step") {
        for i in 0..cols {
            // Touch each value as its own type, as a reader would.
            match row.get_ref(i).expect("column") {
                ValueRef::Integer(v) => ints = ints.wrapping_add(v),
                ValueRef::Real(v) => reals += v,
                ValueRef::Text(v) | ValueRef::Blob(v) => bytes += v.len(),
                ValueRef::Null => {}
            }
        }
        n += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    // Print the checksums so the loop cannot be optimised away.
    eprintln!(
        "bare-sqlite: {n} rows in {secs:.2}s ({:.0} rows/s) [ints {ints} text {bytes} reals {reals:.0}]",
        n as f64 / secs
    );
}

//! `bare-postgres URL SQL sync|async`: the rows of `SQL` from PostgreSQL, every value's
//! bytes touched and nothing decoded or written, through rust-postgres's sync client (a
//! `block_on` per row, as ream's source reads today) or through tokio-postgres in one
//! async loop. The difference is what the sync client's per-row machinery costs ream
//! (BENCHMARKS.md, issue 19); run it under `/usr/bin/time` for the CPU.

use std::time::Instant;

use postgres::types::{FromSql, Type};

/// Any value, as its wire bytes.
struct Raw(usize);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.len()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The bytes of every value of `row`.
fn touch(row: &postgres::Row) -> usize {
    (0..row.len()).map(|i| row.get::<_, Option<Raw>>(i).map_or(0, |r| r.0)).sum()
}

fn sync_read(url: &str, sql: &str) -> Result<(u64, usize), postgres::Error> {
    use postgres::fallible_iterator::FallibleIterator;
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    let mut rows = client.query_raw(sql, std::iter::empty::<i32>())?;
    let (mut n, mut bytes) = (0, 0);
    while let Some(row) = rows.next()? {
        n += 1;
        bytes += touch(&row);
    }
    Ok((n, bytes))
}

fn async_read(url: &str, sql: &str) -> Result<(u64, usize), postgres::Error> {
    use futures_util::{pin_mut, TryStreamExt};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, postgres::NoTls).await?;
        tokio::spawn(connection);
        let rows = client.query_raw(sql, std::iter::empty::<i32>()).await?;
        pin_mut!(rows);
        let (mut n, mut bytes) = (0, 0);
        while let Some(row) = rows.try_next().await? {
            n += 1;
            bytes += touch(&row);
        }
        Ok((n, bytes))
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, sql, mode] = &args[..] else {
        eprintln!("usage: bare-postgres URL SQL sync|async");
        std::process::exit(2);
    };
    let t = Instant::now();
    let read = match mode.as_str() {
        "sync" => sync_read(url, sql),
        "async" => async_read(url, sql),
        _ => {
            eprintln!("mode: sync or async");
            std::process::exit(2);
        }
    };
    match read {
        Ok((rows, bytes)) => println!("{mode}: {rows} rows, {bytes} value bytes, {:.2} s", t.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("bare-postgres: {e}");
            std::process::exit(1);
        }
    }
}

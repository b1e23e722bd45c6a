//! Every row exactly once, or a loud failure: a property test over SQLite, PostgreSQL and
//! MariaDB and the keyset, cursor and offset strategies. Each case is a random table with
//! NULLs and repeats in its group and key columns, read at a random batch size while the
//! run's `BatchLimit` changes at random batch boundaries (to sizes that do not divide the
//! page, too: the way a server's memory budget lowers it), and batches end at random byte
//! limits. The rows must be a reference
//! read of the database itself, in order, each exactly once; a key the database does not
//! guarantee unique must be refused for keyset and offset paging, and a NULL key must fail
//! the read, never lose rows. The exact counts (rows, and distinct values for a burst
//! run's bursts) must be the table's own.

#[allow(dead_code)]
#[path = "../../ream-cli/tests/common/my.rs"]
mod my;
#[allow(dead_code)]
#[path = "../../ream-cli/tests/common/pg.rs"]
mod pg;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ream_core::spec::Strategy;
use ream_core::CancelToken;
use ream_sources::{open, Count, CountMode, ReadRequest};

/// Cases per source: each a new table.
const CASES: u64 = 40;

/// One random table: `rid` is its primary key; `g` a group field with NULLs and repeats;
/// `k` a key with repeats (and NULLs in some tables) and no index; `u` unique where not
/// NULL (NULLs in some tables).
struct Table {
    rows: Vec<Row>,
}

/// rid, g, k, u.
type Row = (i64, Option<&'static str>, Option<i64>, Option<i64>);

impl Table {
    fn random(rng: &mut ChaCha8Rng) -> Table {
        let n = rng.random_range(0..160);
        let k_nulls = rng.random_bool(0.5);
        let u_nulls = rng.random_bool(0.5);
        let groups = [None, Some("a"), Some("b"), Some("c")];
        let rows = (1..=n)
            .map(|rid| {
                let g = groups[rng.random_range(0..groups.len())];
                let k = (!k_nulls || rng.random_bool(0.9)).then(|| rng.random_range(0..(n / 4 + 1)));
                let u = (!u_nulls || rng.random_bool(0.9)).then_some(rid * 3);
                (rid, g, k, u)
            })
            .collect();
        Table { rows }
    }

    fn insert_sql(&self) -> String {
        let sql = |v: Option<String>| v.unwrap_or_else(|| "NULL".into());
        let values: Vec<String> = self
            .rows
            .iter()
            .map(|(rid, g, k, u)| {
                format!(
                    "({rid}, {}, {}, {}, 'x{rid}')",
                    sql(g.map(|g| format!("'{g}'"))),
                    sql(k.map(|k| k.to_string())),
                    sql(u.map(|u| u.to_string()))
                )
            })
            .collect();
        if values.is_empty() {
            return String::new();
        }
        format!("INSERT INTO t (rid, g, k, u, pad) VALUES {};", values.join(", "))
    }
}

const SCHEMA: &str =
    "CREATE TABLE t (rid INTEGER PRIMARY KEY, g VARCHAR(4), k INTEGER, u INTEGER UNIQUE, pad VARCHAR(20));";

/// A database of one kind, with a way to read the reference order from it.
trait Db {
    fn url(&self) -> String;
    fn load(&self, table: &Table);
    /// `rid` in the order `ORDER BY <order>`, read by the database's own client.
    fn reference(&self, order: &str) -> Vec<i64>;
    /// The source's NULL order for `g`: SQLite and MySQL sort NULLs first, PostgreSQL last.
    fn nulls_first(&self) -> bool;
}

struct Sqlite(tempfile::TempDir);

impl Db for Sqlite {
    fn url(&self) -> String {
        format!("sqlite:{}", self.0.path().join("t.sqlite").display())
    }
    fn load(&self, table: &Table) {
        let path = self.0.path().join("t.sqlite");
        let _ = std::fs::remove_file(&path);
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(&format!("{SCHEMA}{}", table.insert_sql())).unwrap();
    }
    fn reference(&self, order: &str) -> Vec<i64> {
        let c = rusqlite::Connection::open(self.0.path().join("t.sqlite")).unwrap();
        let mut s = c.prepare(&format!("SELECT rid FROM t ORDER BY {order}")).unwrap();
        s.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    }
    fn nulls_first(&self) -> bool {
        true
    }
}

impl Db for pg::PgDb {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn load(&self, table: &Table) {
        self.exec(&format!("DROP TABLE IF EXISTS t; {SCHEMA}{}", table.insert_sql()));
    }
    fn reference(&self, order: &str) -> Vec<i64> {
        let rows = self.client().query(&format!("SELECT rid::int8 FROM t ORDER BY {order}"), &[]).unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }
    fn nulls_first(&self) -> bool {
        false
    }
}

impl Db for my::MyDb {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn load(&self, table: &Table) {
        self.sql(&format!("DROP TABLE IF EXISTS t; {SCHEMA}{}", table.insert_sql()));
    }
    fn reference(&self, order: &str) -> Vec<i64> {
        let out = self.sql(&format!("SELECT rid FROM t ORDER BY {order}"));
        String::from_utf8(out).unwrap().lines().skip(1).map(|l| l.parse().unwrap()).collect()
    }
    fn nulls_first(&self) -> bool {
        true
    }
}

/// Read `rid` of every row through ream's source, changing the batch limit at random
/// batch boundaries. `Err` is the source's message.
fn read(db: &dyn Db, mut req: ReadRequest, rng: &mut ChaCha8Rng) -> Result<Vec<i64>, String> {
    req.batch_size = [1, 2, 3, 7, 10, 64][rng.random_range(0..6)];
    // Byte cuts too: a row here is about 50 bytes, so 64 and 300 end batches early.
    req.batch_bytes = [ream_sources::DEFAULT_BATCH_BYTES, 64, 300][rng.random_range(0..3)];
    let limit = req.batch_limit.clone();
    let mut src = open(&db.url(), &req, CancelToken::new()).map_err(|e| e.to_string())?;
    let rid = src.schema().index_of("rid").unwrap();
    let mut rids = Vec::new();
    let mut seed = ChaCha8Rng::seed_from_u64(rng.random());
    src.stream(&mut |batch, _| {
        rids.extend(batch.column(rid).as_primitive::<Int64Type>().values().iter().copied());
        if seed.random_bool(0.4) {
            // 0 lifts the limit; anything else, divisor of the page or not, caps batches.
            limit.set(seed.random_range(0..req.batch_size + 3));
        }
        true
    })
    .map_err(|e| e.to_string())?;
    Ok(rids)
}

fn request(key: &str, strategy: Strategy) -> ReadRequest {
    let mut req = ReadRequest::table("t");
    req.order_prefix = vec!["g".into()];
    req.key = vec![key.into()];
    req.strategy = strategy;
    req
}

fn g_order(db: &dyn Db) -> &'static str {
    if db.nulls_first() {
        "(g IS NULL) DESC, g"
    } else {
        "(g IS NULL), g"
    }
}

/// A proven key (the primary key): the exact reference order, whatever the strategy.
fn a_primary_key_gives_every_row_once_in_order(db: &dyn Db, rng: &mut ChaCha8Rng) {
    let want = db.reference(&format!("{}, rid", g_order(db)));
    for strategy in [Strategy::Keyset, Strategy::Cursor, Strategy::Offset] {
        let got = read(db, request("rid", strategy), rng).unwrap_or_else(|e| panic!("{strategy}: {e}"));
        assert_eq!(got, want, "{strategy} on {}", db.url());
    }
}

/// A unique index with NULLs: each row once in order, or a failure naming the NULL key.
fn a_unique_key_with_nulls_fails_or_gives_every_row_once(db: &dyn Db, table: &Table, rng: &mut ChaCha8Rng) {
    let has_null = table.rows.iter().any(|r| r.3.is_none());
    let want = db.reference(&format!("{}, u", g_order(db)));
    for strategy in [Strategy::Keyset, Strategy::Cursor, Strategy::Offset] {
        match read(db, request("u", strategy), rng) {
            Ok(got) => {
                assert!(!has_null, "{strategy}: a NULL key was read without an error");
                assert_eq!(got, want, "{strategy} on {}", db.url());
            }
            Err(e) => {
                assert!(has_null, "{strategy}: {e}");
                assert!(e.contains("column `u`") && e.contains("a key column is NULL"), "{strategy}: {e}");
            }
        }
    }
}

/// A key that repeats, with no index to prove it unique: keyset and offset are refused
/// (SQLite pages by the rowid as a tiebreaker instead); every row that is read comes
/// once, in (g, k) order; a NULL key fails the read.
fn a_repeating_key_is_refused_or_read_once(db: &dyn Db, table: &Table, sqlite: bool, rng: &mut ChaCha8Rng) {
    let has_null = table.rows.iter().any(|r| r.2.is_none());
    let mut all: Vec<i64> = table.rows.iter().map(|r| r.0).collect();
    all.sort();
    let order = db.reference(&format!("{}, k, rid", g_order(db)));
    for strategy in [Strategy::Keyset, Strategy::Cursor, Strategy::Offset] {
        match read(db, request("k", strategy), rng) {
            Ok(got) if sqlite => {
                assert!(!has_null, "{strategy}: a NULL key was read without an error");
                assert_eq!(got, order, "{strategy}: by (g, k, rowid)");
            }
            Ok(got) => {
                assert!(!has_null && strategy == Strategy::Cursor, "{strategy}: read a repeating key");
                let key_of = |rid: i64| order.iter().position(|r| *r == rid).unwrap();
                let mut sorted = got.clone();
                sorted.sort();
                assert_eq!(sorted, all, "{strategy}: every row exactly once");
                // In (g, k) order: ties may come in any order, so compare the positions'
                // (g, k) values through the reference's grouping.
                let gk = |rid: i64| {
                    let r = &table.rows[(rid - 1) as usize];
                    (r.1, r.2)
                };
                for w in got.windows(2) {
                    let (a, b) = (key_of(w[0]), key_of(w[1]));
                    assert!(a < b || gk(w[0]) == gk(w[1]), "{strategy}: out of order at rid {} then {}", w[0], w[1]);
                }
            }
            Err(e) if strategy == Strategy::Cursor || sqlite => {
                assert!(has_null, "{strategy}: {e}");
                assert!(e.contains("a key column is NULL"), "{strategy}: {e}");
            }
            Err(e) => assert!(
                e.contains(&format!("{strategy} paging needs a key the database guarantees unique"))
                    && e.contains("key: [k]"),
                "{strategy}: {e}"
            ),
        }
    }
}

/// Exact counts of the rows after a random `rid`, and of their distinct `g` and `k` with
/// NULL as one value (a burst run's bursts), equal what the table holds.
fn counts_are_the_tables_own(db: &dyn Db, table: &Table, rng: &mut ChaCha8Rng) {
    let cut = rng.random_range(0..=table.rows.len() as i64);
    let mut req = ReadRequest::table("t");
    req.filter = Some(format!("rid > {cut}"));
    req.count = CountMode::Exact;
    let src = open(&db.url(), &req, CancelToken::new()).unwrap();
    let kept: Vec<&Row> = table.rows.iter().filter(|r| r.0 > cut).collect();
    let count = |c: Count| src.counter(&c).expect("a counter")().unwrap();
    assert_eq!(count(Count::Rows), kept.len() as u64, "rows after {cut}");
    let groups: std::collections::HashSet<_> = kept.iter().map(|r| r.1).collect();
    assert_eq!(count(Count::Distinct("g".into())), groups.len() as u64, "distinct g after {cut}");
    let keys: std::collections::HashSet<_> = kept.iter().map(|r| r.2).collect();
    assert_eq!(count(Count::Distinct("k".into())), keys.len() as u64, "distinct k after {cut}");
    assert!(src.counter(&Count::Distinct("nope".into())).is_none(), "a field the read does not select");
}

fn property(db: &dyn Db, sqlite: bool, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for case in 0..CASES {
        let table = Table::random(&mut rng);
        db.load(&table);
        eprintln!("seed {seed} case {case}: {} rows on {}", table.rows.len(), db.url());
        a_primary_key_gives_every_row_once_in_order(db, &mut rng);
        a_unique_key_with_nulls_fails_or_gives_every_row_once(db, &table, &mut rng);
        a_repeating_key_is_refused_or_read_once(db, &table, sqlite, &mut rng);
        counts_are_the_tables_own(db, &table, &mut rng);
    }
}

#[test]
fn sqlite_reads_every_row_exactly_once_under_changing_batch_limits() {
    property(&Sqlite(tempfile::tempdir().unwrap()), true, 1);
}

#[test]
fn postgres_reads_every_row_exactly_once_under_changing_batch_limits() {
    let Some(db) = pg::PgDb::create("exactly_once") else { return };
    property(&db, false, 2);
}

#[test]
fn mariadb_reads_every_row_exactly_once_under_changing_batch_limits() {
    let Some(db) = my::MyDb::create("exactly_once") else { return };
    property(&db, false, 3);
}

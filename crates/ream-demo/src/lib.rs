//! ream-demo: a deterministic sales database (regions, customers, products, invoices,
//! invoice lines) at any size, and example report specs that run against it.
//!
//! The data looks like real data where it matters to a report tool: skewed distributions
//! (a few customers place most invoices, regions differ in size), NULLs where real data has
//! them (emails, cities, payment dates, notes), non-ASCII names, quotes, commas and
//! newlines inside text, and money as exact two-decimal values (SQLite stores them as
//! REAL; ream reads DECIMAL(12,2) columns back as exact decimals).
//!
//! ```no_run
//! let dir = std::path::Path::new("demo");
//! let made = ream_demo::create(dir, &ream_demo::DemoOptions { invoices: 10_000, seed: 42, force: false }).unwrap();
//! println!("{} invoices, {} lines in {}", made.invoices, made.lines, made.database.display());
//! ```

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::{params, Connection};

/// How much demo data to make.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Invoices (customers scale with them: one per 20 invoices, at least 50).
    pub invoices: u64,
    /// The random seed; the same seed and size give the same database.
    pub seed: u64,
    /// Write into a directory that already holds files (the demo's own are replaced).
    pub force: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions { invoices: 100_000, seed: 42, force: false }
    }
}

/// What `create` made.
#[derive(Debug, Clone)]
pub struct Made {
    pub database: PathBuf,
    pub reports: Vec<PathBuf>,
    pub customers: u64,
    pub invoices: u64,
    pub lines: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: {0}")]
    Io(#[from] std::io::Error),
    #[error("demo: sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("demo: {0}")]
    Invalid(String),
    /// The directory holds files and `force` is not set.
    #[error("demo: {} is not empty: give --force to write the demo into it (its demo.sqlite and reports/*.yaml are replaced)", .0.display())]
    NotEmpty(PathBuf),
}

impl DemoError {
    /// The caller asked for something that cannot be done as asked (exit 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, DemoError::Invalid(_) | DemoError::NotEmpty(_))
    }
}

const SCHEMA: &str = "
CREATE TABLE regions (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, code TEXT NOT NULL);
CREATE TABLE customers (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, region_id INTEGER NOT NULL REFERENCES regions(id),
  city TEXT, segment TEXT NOT NULL, created_at DATETIME NOT NULL);
CREATE TABLE products (
  id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE, name TEXT NOT NULL, category TEXT NOT NULL,
  unit_price DECIMAL(10,2) NOT NULL, active BOOLEAN NOT NULL);
CREATE TABLE invoices (
  id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), date DATE NOT NULL,
  status TEXT NOT NULL, total DECIMAL(12,2) NOT NULL, paid_at DATETIME, note TEXT);
CREATE TABLE invoice_lines (
  invoice_id INTEGER NOT NULL REFERENCES invoices(id), line_no INTEGER NOT NULL, product_id INTEGER NOT NULL REFERENCES products(id),
  quantity INTEGER NOT NULL, unit_price DECIMAL(10,2) NOT NULL, discount DECIMAL(4,2) NOT NULL, amount DECIMAL(12,2) NOT NULL,
  PRIMARY KEY (invoice_id, line_no));
";

const INDEXES: &str = "
CREATE INDEX invoices_date ON invoices (date, id);
CREATE INDEX invoices_customer ON invoices (customer_id, id);
CREATE INDEX customers_region ON customers (region_id, id);
ANALYZE;
";

/// (name, code, weight): regions differ a lot in size.
const REGIONS: &[(&str, &str, u32)] = &[
    ("North America", "NA", 30),
    ("Europe", "EU", 25),
    ("Asia-Pacific", "APAC", 18),
    ("Latin America", "LATAM", 9),
    ("Nordics", "NORD", 7),
    ("Middle East", "ME", 5),
    ("Africa", "AF", 4),
    ("Oceania", "OC", 2),
];

const FIRST: &[&str] = &[
    "Anna",
    "José",
    "Zoë",
    "Łukasz",
    "Søren",
    "Ana María",
    "Björn",
    "Chloé",
    "Дмитрий",
    "Αλέξανδρος",
    "Ngọc Anh",
    "François",
    "Jürgen",
    "Siobhán",
    "Mei",
    "Ahmed",
    "Olúwádáre",
    "Priya",
    "Kenji",
    "Lars",
    "María José",
    "Ioana",
    "Thomas",
    "Emily",
    "Noah",
    "Sofía",
    "Mateus",
    "Hana",
    "Ελένη",
    "Ольга",
];
const LAST: &[&str] = &[
    "Smith",
    "García",
    "Müller",
    "O'Brien",
    "Kowalski",
    "Nguyễn",
    "Øvergård",
    "Dubois",
    "Иванов",
    "Παπαδόπουλος",
    "Rossi",
    "Tanaka",
    "Sørensen",
    "Fernández",
    "Novák",
    "Silva",
    "Okafor",
    "Patel",
    "Andersson",
    "Schröder",
    "D'Angelo",
    "van der Berg",
    "Lefèvre",
    "Çelik",
    "Ødegaard",
];
const COMPANY: &[&str] = &[
    "{l} & Sons",
    "{l}, {l2} and Partners",
    "The \"Best\" {n} Co.",
    "{l} {n}s Ltd.",
    "{n} Works, Inc.",
    "{l} GmbH",
    "Café {l}",
    "{l} & {l2} S.A.",
    "{n}haus {l}",
    "{l} Trading",
];
const NOUNS: &[&str] = &["Widget", "Gadget", "Lamp", "Cable", "Bolt", "Panel", "Valve", "Sensor", "Chair", "Kettle"];
const CITIES: &[&str] = &[
    "New York",
    "São Paulo",
    "Zürich",
    "Kraków",
    "Москва",
    "Αθήνα",
    "Reykjavík",
    "Malmö",
    "Tōkyō",
    "Lagos",
    "Montréal",
    "Córdoba",
    "Düsseldorf",
    "Cape Town",
    "Mumbai",
    "Sydney",
    "Dubai",
    "Oslo",
    "Seoul",
    "Lima",
];
const CATEGORIES: &[&str] = &["Hardware", "Electronics", "Furniture", "Kitchen", "Office", "Outdoor", "Tools"];
const PRODUCT_NAMES: &[&str] = &[
    "{n}, standard",
    "12\" {n}",
    "{n} (pack of 10)",
    "Cable, USB-C, 2m",
    "Deluxe {n} — matte",
    "{n} \"Pro\"",
    "Mini {n}",
    "{n}; heavy duty",
    "Ergonomic {n}",
    "{n} Ø 40mm",
];
const NOTES: &[&str] = &[
    "Deliver to \"Dock 4\", ask for Ana",
    "Paid in two parts,\nsee email of 3 March",
    "Ünïcödé ✓ note — räksmörgås",
    "PO #4471; net 30",
    "Customer says: \"urgent\"",
    "=SUM(A1:A9)",
    "<b>not html</b> & co",
];

fn pick<'a>(rng: &mut ChaCha8Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

fn fill(pattern: &str, rng: &mut ChaCha8Rng) -> String {
    let mut s = pattern.to_string();
    s = s.replace("{l2}", pick(rng, LAST));
    s = s.replace("{l}", pick(rng, LAST));
    s.replace("{n}", pick(rng, NOUNS))
}

fn weighted(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// Days since 1970-01-01 to ISO date text.
fn iso_date(days: i64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm): no date crate needed for the demo.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

const DAY_2020_01_01: i64 = 18_262;
const DAY_2023_01_01: i64 = 19_358;
const DEMO_DAYS: i64 = 3 * 365 + 1;

/// Create `dir/demo.sqlite` and `dir/reports/*.yaml`. The database is written under a
/// temporary name and renamed when complete.
pub fn create(dir: &Path, opts: &DemoOptions) -> Result<Made, DemoError> {
    if opts.invoices == 0 {
        return Err(DemoError::Invalid("--rows must be at least 1".into()));
    }
    let used = std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()).unwrap_or(false);
    if used && !opts.force {
        return Err(DemoError::NotEmpty(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir.join("reports"))?;
    let database = dir.join("demo.sqlite");
    let tmp = dir.join(format!(".demo.sqlite.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = fill_database(&tmp, opts);
    let (customers, lines) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &database)?;
    let mut reports = Vec::new();
    for (name, text) in EXAMPLES {
        let p = dir.join("reports").join(name);
        std::fs::write(&p, text)?;
        reports.push(p);
    }
    Ok(Made { database, reports, customers, invoices: opts.invoices, lines })
}

fn fill_database(path: &Path, opts: &DemoOptions) -> Result<(u64, u64), DemoError> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -65536;")?;
    conn.execute_batch(SCHEMA)?;
    let tx = conn.unchecked_transaction()?;

    let region_weights: Vec<u32> = REGIONS.iter().map(|r| r.2).collect();
    {
        let mut ins = tx.prepare("INSERT INTO regions VALUES (?, ?, ?)")?;
        for (i, (name, code, _)) in REGIONS.iter().enumerate() {
            ins.execute(params![i as i64 + 1, name, code])?;
        }
    }

    let customers = (opts.invoices / 20).max(50);
    {
        let mut ins = tx.prepare("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)")?;
        for id in 1..=customers {
            let person = rng.random_bool(0.4);
            let name = if person {
                format!("{} {}", pick(&mut rng, FIRST), pick(&mut rng, LAST))
            } else {
                let pattern = pick(&mut rng, COMPANY);
                fill(pattern, &mut rng)
            };
            let email = (!rng.random_bool(0.12)).then(|| format!("contact{id}@example.com"));
            let region = weighted(&mut rng, &region_weights) as i64 + 1;
            let city = (!rng.random_bool(0.03)).then(|| pick(&mut rng, CITIES).to_string());
            let segment = ["Enterprise", "SMB", "Consumer"][weighted(&mut rng, &[15, 45, 40])];
            let created = DAY_2020_01_01 + rng.random_range(0..3 * 365);
            let secs = rng.random_range(0..86_400);
            let created_at = format!("{} {:02}:{:02}:{:02}", iso_date(created), secs / 3600, secs / 60 % 60, secs % 60);
            ins.execute(params![id as i64, name, email, region, city, segment, created_at])?;
        }
    }

    let products = 500u64;
    let mut prices = Vec::with_capacity(products as usize);
    {
        let mut ins = tx.prepare("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?)")?;
        for id in 1..=products {
            // Log-skewed prices from 1.99 to ~3000.
            let cents = (199.0 * (1500.0f64).powf(rng.random::<f64>())).round() as i64;
            prices.push(cents);
            let pattern = pick(&mut rng, PRODUCT_NAMES);
            let name = fill(pattern, &mut rng);
            let category = pick(&mut rng, CATEGORIES);
            ins.execute(params![
                id as i64,
                format!("SKU-{id:05}"),
                name,
                category,
                cents as f64 / 100.0,
                rng.random_bool(0.9)
            ])?;
        }
    }

    let mut lines_total = 0u64;
    {
        let mut inv = tx.prepare("INSERT INTO invoices VALUES (?, ?, ?, ?, ?, ?, ?)")?;
        let mut line = tx.prepare("INSERT INTO invoice_lines VALUES (?, ?, ?, ?, ?, ?, ?)")?;
        for id in 1..=opts.invoices {
            // A few customers place most invoices.
            let u: f64 = rng.random();
            let customer = ((customers as f64) * u.powi(3)) as i64 + 1;
            // Dates advance with the id, with jitter, over 2023–2025.
            let base = DAY_2023_01_01 + (id as i64 - 1) * DEMO_DAYS / opts.invoices as i64;
            let day = (base + rng.random_range(-10..=10)).clamp(DAY_2023_01_01, DAY_2023_01_01 + DEMO_DAYS - 1);
            let status = ["paid", "open", "overdue", "void"][weighted(&mut rng, &[70, 20, 7, 3])];
            let n_lines = 1 + weighted(&mut rng, &[35, 25, 18, 10, 7, 5]) as i64;
            let mut total_cents = 0i64;
            let mut pending = Vec::with_capacity(n_lines as usize);
            for line_no in 1..=n_lines {
                let product = rng.random_range(0..products) as usize;
                let qty = 1 + weighted(&mut rng, &[40, 20, 10, 8, 6, 5, 4, 3, 2, 2]) as i64;
                let discount_pct = [0i64, 5, 10, 15][weighted(&mut rng, &[75, 12, 9, 4])];
                let price = prices[product];
                // Half-up rounding of qty × price × (1 − discount) to cents, in integers.
                let amount = (qty * price * (100 - discount_pct) + 50) / 100;
                total_cents += amount;
                pending.push((line_no, product as i64 + 1, qty, price, discount_pct, amount));
            }
            let paid_at = (status == "paid").then(|| {
                let d = day + rng.random_range(0..60);
                let secs = rng.random_range(28_800..64_800);
                format!("{} {:02}:{:02}:{:02}", iso_date(d), secs / 3600, secs / 60 % 60, secs % 60)
            });
            let note = rng.random_bool(0.1).then(|| pick(&mut rng, NOTES).to_string());
            inv.execute(params![
                id as i64,
                customer,
                iso_date(day),
                status,
                total_cents as f64 / 100.0,
                paid_at,
                note
            ])?;
            for (line_no, product, qty, price, discount_pct, amount) in pending {
                line.execute(params![
                    id as i64,
                    line_no,
                    product,
                    qty,
                    price as f64 / 100.0,
                    discount_pct as f64 / 100.0,
                    amount as f64 / 100.0
                ])?;
                lines_total += 1;
            }
        }
    }
    tx.commit()?;
    conn.execute_batch(INDEXES)?;
    Ok((customers, lines_total))
}

/// The example specs written to `reports/`. They are also ream's own integration tests.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("sales_by_region.yaml", include_str!("../../../examples/sales_by_region.yaml")),
    ("invoice_export.yaml", include_str!("../../../examples/invoice_export.yaml")),
    ("customer_statement.yaml", include_str!("../../../examples/customer_statement.yaml")),
    ("category_months.yaml", include_str!("../../../examples/category_months.yaml")),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_are_civil_dates() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(DAY_2023_01_01), "2023-01-01");
        assert_eq!(iso_date(DAY_2020_01_01 + 59), "2020-02-29");
    }

    #[test]
    fn the_same_seed_makes_the_same_database() {
        let a = tempfile_dir("a");
        let b = tempfile_dir("b");
        let opts = DemoOptions { invoices: 300, seed: 7, force: false };
        create(&a, &opts).unwrap();
        create(&b, &opts).unwrap();
        let dump = |p: &Path| {
            let c = Connection::open(p.join("demo.sqlite")).unwrap();
            let q = "SELECT group_concat(id || '|' || customer_id || '|' || date || '|' || total || '|' || ifnull(note, '∅'), ';') FROM invoices";
            c.query_row(q, [], |r| r.get::<_, String>(0)).unwrap()
        };
        assert_eq!(dump(&a), dump(&b));
        // Invoice totals are the sum of their lines, to the cent.
        let c = Connection::open(a.join("demo.sqlite")).unwrap();
        let off: i64 = c
            .query_row(
                "SELECT count(*) FROM invoices i WHERE round(i.total * 100) <> (SELECT round(sum(l.amount) * 100) FROM invoice_lines l WHERE l.invoice_id = i.id)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(off, 0);
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }

    #[test]
    fn a_directory_with_files_is_refused_without_force() {
        let d = tempfile_dir("used");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("notes.txt"), "mine").unwrap();
        let opts = DemoOptions { invoices: 60, seed: 1, force: false };
        let e = create(&d, &opts).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("is not empty: give --force"), "{e}");
        assert!(!d.join("demo.sqlite").exists());
        create(&d, &DemoOptions { force: true, ..opts }).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("notes.txt")).unwrap(), "mine");
        assert!(d.join("demo.sqlite").exists());
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ream-demo-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}

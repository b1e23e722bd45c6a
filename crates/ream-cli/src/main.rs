//! `ream`: parse the command line, run, exit with 0 (done), 1 (the run failed), 2 (bad
//! usage, spec, parameter or data) or 130 (interrupted).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use ream_core::load::load_file;
use ream_core::spec::Strategy;
use ream_core::CancelToken;
use ream_engine::{
    check_against_source, explain, prepare, start, AdHoc, CountMode, EngineError, Format, Job, Progress, ResumeLog,
    RunOptions, Snapshot, Summary,
};

/// The version and the commit it was built from (`build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("REAM_COMMIT"), ")");

#[derive(Parser)]
#[command(name = "ream", version = VERSION, about = "Stream reports of any size out of databases", propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Errors and warnings only: no progress, notes or summary lines; the log at `warn`.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More log lines: `-v` debug, `-vv` trace (RUST_LOG, when set, decides instead).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// A TOML config file: named sources (`[sources.shop] url = "postgres://…"`, so that
    /// `--source shop` and a spec's `source.url: shop` mean it) for every command, and
    /// `serve`'s settings (the flags' names with `_`).
    #[arg(long, global = true, env = "REAM_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The log (`serve`'s access and run lines, warnings) goes to stderr through `tracing`:
/// RUST_LOG when set (`RUST_LOG=ream::access=off,info`), else `info`, or what `-q`/`-v`
/// ask for.
fn init_logging(quiet: bool, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(given) if !given.trim().is_empty() => EnvFilter::try_new(given).unwrap_or_else(|e| {
            eprintln!("ream: warning: RUST_LOG: {e}; logging at {level}");
            EnvFilter::new(level)
        }),
        _ => EnvFilter::new(level),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[derive(Subcommand)]
enum Command {
    /// Create DIR/demo.sqlite (a deterministic sales database) and DIR/reports/*.yaml.
    Demo {
        /// The directory to write (made if missing; one with files needs --force).
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// Number of invoices (customers and lines scale with it).
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        /// The random seed: the same seed and rows give the same database.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Write into DIR even if it holds files (the demo's own files are replaced).
        #[arg(long)]
        force: bool,
    },
    /// Run a report spec, or export a table or query with no spec.
    Run(Box<RunArgs>),
    /// Check specs; print every problem with file:line:col and the key.
    Validate {
        /// The spec files (.yaml, .yml, .toml or .json).
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Also open each spec's source (no row is read) and check field names and types.
        #[arg(long)]
        connect: bool,
        /// The source to check against with --connect; overrides the specs' `source.url`.
        #[arg(long, requires = "connect")]
        source: Option<String>,
    },
    /// Print the JSON Schema of the spec format.
    Schema,
    /// Serve the reports in a directory over HTTP (streamed outputs, async runs, a run
    /// registry with progress and cancellation, metrics, a dashboard at /).
    Serve(Box<ServeArgs>),
    /// Print a shell completion script: `ream completions bash > /etc/bash_completion.d/ream`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `ream man | man -l -`.
    Man,
    /// API tokens for `[[auth.tokens]]`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write a starter file.
    #[command(subcommand)]
    New(NewCommand),
}

#[derive(Subcommand)]
enum NewCommand {
    /// Write NAME.yaml: a commented spec of every row of a table, with its columns, their
    /// types and its key, read from the database.
    Report {
        /// The report's id, and the file's name (NAME.yaml).
        name: String,
        /// The database: `sqlite:PATH`, `postgres://…` or `mysql://…` (default: REAM_SOURCE).
        /// Written into the spec without its password.
        #[arg(long)]
        source: Option<String>,
        /// The table (or view) to report on.
        #[arg(long)]
        table: String,
        /// Where to write (default: NAME.yaml here); `-` for stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a fresh API token and its SHA-256: give the token to the caller, and put
    /// only the hash in the server's config.
    New,
}

/// `ream serve`'s settings. Each can come from a flag or from `--config FILE` (TOML, the
/// same names with `_`, e.g. `listen = "0.0.0.0:8080"`, `max_runs = 16`); a flag wins over
/// the file, the file over the default.
#[derive(clap::Args, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServeArgs {
    /// `[sources.NAME]` (config file only): named sources, as for every command.
    #[arg(skip)]
    #[serde(default)]
    sources: std::collections::BTreeMap<String, ream_engine::NamedSourceConfig>,
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free port; the
    /// address is printed).
    #[arg(long)]
    listen: Option<String>,
    /// The directory of report specs (default `reports`).
    #[arg(long, env = "REAM_REPORTS")]
    reports: Option<PathBuf>,
    /// A source URL for every report, overriding the specs' `source.url`.
    #[arg(long)]
    source: Option<String>,
    /// Runs at once on this instance, sync and async (default 8); past it async runs wait
    /// in the queue and downloads get 429 with Retry-After.
    #[arg(long)]
    max_runs: Option<usize>,
    /// Runs at once of one actor across every instance (default: no limit); past it their
    /// async runs wait while other actors' start, and their downloads get 429.
    #[arg(long)]
    max_runs_per_actor: Option<usize>,
    /// Runs at once reading one source across every instance (default: no limit), so the
    /// database is not flooded; past it as --max-runs-per-actor.
    #[arg(long)]
    max_runs_per_source: Option<usize>,
    /// Queued runs across every instance past which POST /runs gets 429 with Retry-After
    /// (default 1000).
    #[arg(long)]
    queue_max: Option<usize>,
    /// Bytes of cached downloads (reports with `cache:`) kept in all (default 1 GiB =
    /// 1073741824); past it the oldest go first.
    #[arg(long)]
    cache_max_bytes: Option<u64>,
    /// Rows per batch, overriding the specs'.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Where the embedded control store and the default output directory live
    /// (default `ream-data`): runs and outputs outlive a restart.
    #[arg(long, env = "REAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The control store every instance shares (runs, queue, outputs):
    /// `postgres://USER@HOST/DB` for several instances, or `sqlite:PATH` (default:
    /// `control.sqlite` in the data directory).
    #[arg(long, env = "REAM_CONTROL")]
    control: Option<String>,
    /// Where async runs' outputs are stored: `file:///DIR` or `s3://BUCKET/PREFIX`
    /// (credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); default
    /// `outputs` in the data directory.
    #[arg(long, env = "REAM_OUTPUT_STORE", conflicts_with = "output_dir")]
    output_store: Option<String>,
    /// The endpoint of an S3-compatible server for an `s3://` output store
    /// (`http://127.0.0.1:8333`).
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// Shorthand for `--output-store file:///DIR`.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Seconds a run's lease lasts without its instance's heartbeat (default 15); then
    /// another instance takes it over.
    #[arg(long)]
    lease_secs: Option<u64>,
    /// Stored outputs older than this many seconds are removed (default 86400).
    #[arg(long)]
    retention_secs: Option<u64>,
    /// Stored outputs past this many bytes in all are removed, oldest first (default 10 GiB).
    #[arg(long)]
    retention_bytes: Option<u64>,
    /// Finished runs kept in the registry (default 200).
    #[arg(long)]
    keep_runs: Option<usize>,
    /// Seconds running runs get to finish on shutdown (SIGTERM, Ctrl-C) before they are
    /// cancelled (default 30).
    #[arg(long)]
    grace_secs: Option<u64>,
    /// A run that reads no rows for this many seconds is flagged as stalled (default 60).
    #[arg(long)]
    stall_secs: Option<u64>,
    /// Memory one run may hold (default 256 MiB): over it the run's batches get smaller,
    /// and at 16 rows per batch still over, the run fails saying so.
    #[arg(long)]
    run_memory_bytes: Option<u64>,
    /// Seconds a response may take to start (default 60): a run still preparing then is
    /// cancelled and the client gets 408. Downloads and event streams are not limited.
    #[arg(long)]
    request_timeout_secs: Option<u64>,
    /// Seconds from a request's first byte to the end of its head (default 10): a
    /// connection slower than that is closed.
    #[arg(long)]
    header_timeout_secs: Option<u64>,
    /// Seconds a connection may stay open with no request in flight (default 60).
    #[arg(long)]
    idle_timeout_secs: Option<u64>,
    /// Connections open at once (default 1024); past it, new ones wait to be accepted.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Without `[auth]`, serve a non-loopback address anyway: anyone who can reach it
    /// may run every report (a warning is printed).
    #[arg(long)]
    #[serde(default)]
    allow_anonymous: bool,
    /// Append one JSON line per run start and end, download, cancel and 401/403 to this
    /// file (flushed and fsynced); admins read it at GET /audit?since=….
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// `Host` values that name this server (`host` or `host:port`, comma-separated);
    /// requests for any other are refused (DNS rebinding). Default: on loopback,
    /// localhost, 127.0.0.1 and [::1] with the port; elsewhere any.
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    #[serde(default)]
    allowed_hosts: Vec<String>,
    /// Origins (`https://app.example.com`, comma-separated) whose pages may call the API
    /// from a browser (CORS). Default: none.
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',')]
    #[serde(default)]
    cors_origins: Vec<String>,
    /// The SMTP relay schedules mail through: `smtp://host:port`,
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS) or `smtps://user:pass@host`
    /// (TLS). Without it, schedules have no email targets.
    #[arg(long, env = "REAM_SMTP_URL")]
    smtp_url: Option<String>,
    /// The sender of scheduled mail (default ream@localhost).
    #[arg(long)]
    smtp_from: Option<String>,
    /// A PEM root certificate the relay's certificate may chain to, besides the system's (a
    /// relay with a private CA); for smtps:// or ?tls=required.
    #[arg(long, value_name = "PEM")]
    smtp_ca_file: Option<PathBuf>,
    /// Mail domains a schedule's recipients must be in (comma-separated), checked when
    /// it is saved. Default: any.
    #[arg(long, value_name = "DOMAINS", value_delimiter = ',')]
    #[serde(default)]
    smtp_allowed_domains: Vec<String>,
    /// Prefixes a schedule's store target must start with (`s3://reports/`,
    /// `file:///srv/exports/`; comma-separated). Default: no store targets.
    #[arg(long, value_name = "PREFIXES", value_delimiter = ',')]
    #[serde(default)]
    delivery_store_prefix: Vec<String>,
    /// The directory webhook targets' `secret_file`s are read from. Default: no signed
    /// webhooks.
    #[arg(long)]
    secrets_dir: Option<PathBuf>,
    /// This server's address as mail and webhook recipients reach it, for download
    /// links (default: http:// and the listen address).
    #[arg(long)]
    public_url: Option<String>,
    /// Attempts per delivery before it is recorded as failed (default 5).
    #[arg(long)]
    delivery_attempts: Option<u32>,
    /// The wait before a delivery's second attempt, doubling after each (default 30s).
    #[arg(long)]
    delivery_backoff: Option<String>,
    /// How long a mailed or posted download link works (default 7d).
    #[arg(long)]
    delivery_link_ttl: Option<String>,
    /// With `[auth]`, /metrics needs a bearer token too (it is open by default).
    #[arg(long)]
    #[serde(default)]
    close_metrics: bool,
    /// `[auth]` (config file only): JWT keys and checks, API tokens, the admin role
    /// (docs/security.md).
    #[arg(skip)]
    auth: Option<ream_auth::AuthConfig>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The report spec (.yaml, .yml, .toml or .json). Omit it for an ad-hoc export.
    spec: Option<PathBuf>,
    /// A parameter, `name=value` (lists: `name=a,b,c`).
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Run as an actor with this claim, for testing a spec's `:actor.<claim>` and
    /// `source.session` (`--claim tenant=1 --claim sub=alice`; a value is JSON where it
    /// parses as JSON, else text; `roles=a,b` sets the roles).
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
    /// The source URL: `sqlite:PATH`, `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` or
    /// `mysql://USER[:PASSWORD]@HOST[:PORT]/DB`, or the name of a `[sources.NAME]` in the
    /// config file; overrides the spec's `source.url`. Without it or a `source.url`, the
    /// environment's REAM_SOURCE.
    #[arg(long)]
    source: Option<String>,
    /// Ad hoc: export this table (in its key order).
    #[arg(long, conflicts_with_all = ["spec", "sql"])]
    table: Option<String>,
    /// Ad hoc: export the rows of this SELECT.
    #[arg(long, conflicts_with = "spec")]
    sql: Option<String>,
    /// Ad hoc: the unique key, comma-separated (default: the rowid of a rowid table).
    #[arg(long, value_delimiter = ',', conflicts_with = "spec")]
    key: Vec<String>,
    /// Output format; default: from the -o file's extension, else csv.
    #[arg(short, long, value_enum)]
    format: Option<FormatArg>,
    /// Output file, or `-` for standard output (the default).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Rows per batch (default 4096).
    #[arg(long)]
    batch_size: Option<usize>,
    /// A batch also ends once its values hold this many bytes (default 8 MiB = 8388608):
    /// memory stays bounded however wide the rows.
    #[arg(long)]
    batch_bytes: Option<usize>,
    /// How the source pages (default auto).
    #[arg(long, value_enum)]
    strategy: Option<StrategyArg>,
    /// Progress on stderr: auto (when stderr is a terminal), always or never.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
    /// How progress finds its total: auto (exact on SQLite, the planner's estimate on a
    /// server), exact (a count query beside the run), estimate, or none.
    #[arg(long, value_enum, default_value_t = CountArg::Auto)]
    count: CountArg,
    /// Same as --count none.
    #[arg(long)]
    no_count: bool,
    /// Read each statement on a fresh snapshot instead of one snapshot for the whole run
    /// (no long transaction on the server; see docs/sources.md for the trade-off).
    #[arg(long)]
    no_snapshot: bool,
    /// A summary report (`detail: false`) reads its rows and aggregates them in ream,
    /// rather than as one GROUP BY in the database (see `--explain`).
    #[arg(long)]
    no_pushdown: bool,
    /// Read on N connections at once, each a range of the first order field (an integer),
    /// all on one snapshot; `auto` picks N from the read's size and the cores. The output
    /// is the serial read's, byte for byte (see docs/sources.md#parallel-reads).
    #[arg(long, value_name = "N|auto")]
    parallel: Option<ream_core::spec::Parallel>,
    /// Retries of a lost database connection, each resuming from the last cursor (default 5).
    #[arg(long)]
    retries: Option<u32>,
    /// Print the plan (strategy, why, SQL) to stdout and exit without reading rows.
    #[arg(long)]
    explain: bool,
    /// csv: write text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab,
    /// CR first) with a leading `'` (the spec's `csv.neutralize_formulas`).
    #[arg(long)]
    csv_neutralize_formulas: bool,
    /// xlsx: a plain table for data export (the header row and the rows; no title,
    /// group bands or summary).
    #[arg(long)]
    xlsx_flat: bool,
    /// xlsx: outline levels per group, so each group collapses to its header and footer
    /// rows (Excel's +/- buttons beside the rows).
    #[arg(long, conflicts_with = "xlsx_flat")]
    xlsx_outline: bool,
    /// parquet: the most rows in a row group (default 1048576; a row group also ends at
    /// 128 MiB encoded). A row group is held in memory until it is written.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    parquet_row_group_rows: Option<u64>,
    /// parquet: zstd (default), snappy or none.
    #[arg(long)]
    parquet_compression: Option<ream_engine::ParquetCompression>,
    /// Compress the output as it streams: gzip, zstd or none. Default: from -o's last
    /// extension (`.gz`, `.zst`), else none. Not for xlsx, pdf and parquet, which are
    /// compressed already.
    #[arg(long)]
    compress: Option<ream_engine::Compression>,
    /// The compression level: gzip 1–9 (default 2), zstd 1–22 (default 1).
    #[arg(long, value_name = "N")]
    compress_level: Option<i32>,
    /// Split the output into files of at most N rows: `-o sales.csv` writes
    /// sales-00001.csv, sales-00002.csv, … and sales.manifest.json (csv, ndjson,
    /// parquet, xlsx).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    split_rows: Option<u64>,
    /// Split the output into files of about this size (`100MiB`, `64k`, `1000000`): a
    /// part ends before the row that would take it past the size. With --split-rows, a
    /// part ends at whichever comes first.
    #[arg(long, value_parser = ream_engine::split::parse_bytes)]
    split_bytes: Option<u64>,
    /// Split by a field's values in a hive layout: -o names a directory that gets
    /// FIELD=value/part-00001.parquet and manifest.json. The read is ordered by FIELD.
    #[arg(long, value_name = "FIELD")]
    split_by: Option<String>,
    /// Burst the report (its spec's `burst:`): one complete output per value of
    /// `burst.by`, each named by `burst.filename`, in DIR (absent or empty), with
    /// DIR/manifest.json listing each file and its `to`.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["output", "split_rows", "split_bytes", "split_by"])]
    burst_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Ndjson,
    Json,
    Html,
    Xlsx,
    Pdf,
    Parquet,
    Arrow,
}

#[derive(Clone, Copy, ValueEnum)]
enum CountArg {
    Auto,
    Exact,
    Estimate,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    Auto,
    Keyset,
    Cursor,
    Offset,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum ProgressArg {
    Auto,
    Always,
    Never,
}

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    match cli.command {
        Command::Demo { dir, rows, seed, force } => demo(&dir, ream_demo::DemoOptions { invoices: rows, seed, force }),
        Command::Run(args) => match named_sources(cli.config.as_deref()) {
            Ok(sources) => run(*args, sources, cli.quiet),
            Err(code) => code,
        },
        Command::Validate { specs, connect, source } => match named_sources(cli.config.as_deref()) {
            Ok(sources) => validate(&specs, connect, source, sources),
            Err(code) => code,
        },
        Command::Serve(args) => serve(*args, cli.config.as_deref()).unwrap_or_else(|e| {
            eprintln!("ream: error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ream", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Token(TokenCommand::New) => match ream_auth::token::new_token() {
            Ok((token, hash)) => {
                println!("token:  {token}\nsha256: {hash}\n\n[[auth.tokens]]\nsha256 = \"{hash}\"\nsub = \"CHANGE-ME\"\nroles = []");
                ExitCode::SUCCESS
            }
            Err(e) => report(Err(anyhow::anyhow!("no random bytes: {e}"))),
        },
        Command::New(NewCommand::Report { name, source, table, output, force }) => {
            match named_sources(cli.config.as_deref()) {
                Ok(sources) => new_report(&name, source, &sources, &table, output, force),
                Err(code) => code,
            }
        }
        Command::Man => match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(Err(e.into())),
        },
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&ream_core::spec::json_schema()).expect("schema serialises"));
            ExitCode::SUCCESS
        }
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ream: error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// A list flag's values, or else the config file's.
fn first_given(flags: Vec<String>, file: Vec<String>) -> Vec<String> {
    if flags.is_empty() {
        file
    } else {
        flags
    }
}

fn secs(n: Option<u64>) -> Option<std::time::Duration> {
    n.map(std::time::Duration::from_secs)
}

fn serve(flags: ServeArgs, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let file = match config {
        None => ServeArgs::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            match toml::from_str::<ServeArgs>(&text) {
                Ok(mut f) => {
                    // Paths in the file are relative to the file, as a spec's are.
                    let base = path.parent().unwrap_or(Path::new("."));
                    f.reports = f.reports.map(|p| base.join(p));
                    f.output_dir = f.output_dir.map(|p| base.join(p));
                    f.data_dir = f.data_dir.map(|p| base.join(p));
                    f.audit_log = f.audit_log.map(|p| base.join(p));
                    f.secrets_dir = f.secrets_dir.map(|p| base.join(p));
                    f.smtp_ca_file = f.smtp_ca_file.map(|p| base.join(p));
                    f
                }
                Err(e) => {
                    eprintln!("ream: error: {}: {}", path.display(), e.to_string().trim_end());
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            }
        }
    };
    for (name, value) in [
        ("header-timeout-secs", flags.header_timeout_secs.or(file.header_timeout_secs)),
        ("idle-timeout-secs", flags.idle_timeout_secs.or(file.idle_timeout_secs)),
    ] {
        if value == Some(0) {
            return Ok(usage(format!("--{name} must be at least 1 (a zero timeout would close every connection)")));
        }
    }
    let d = ream_server::ServerConfig::default();
    let listen = flags.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
    let allow_anonymous = flags.allow_anonymous || file.allow_anonymous;
    let has_auth = file.auth.is_some();
    let auth_base = config.and_then(Path::parent).unwrap_or(Path::new(".")).to_path_buf();
    let sources = match ream_engine::NamedSources::new(file.sources, &auth_base) {
        Ok(sources) => sources,
        Err(e) => return Ok(usage(format!("{}: {e}", config.unwrap_or(Path::new("")).display()))),
    };
    let config = ream_server::ServerConfig {
        reports: flags.reports.or(file.reports).unwrap_or(d.reports),
        source: flags.source.or(file.source),
        sources,
        max_runs: flags.max_runs.or(file.max_runs).unwrap_or(d.max_runs).max(1),
        max_runs_per_actor: flags
            .max_runs_per_actor
            .or(file.max_runs_per_actor)
            .or(d.max_runs_per_actor)
            .map(|n| n.max(1)),
        max_runs_per_source: flags
            .max_runs_per_source
            .or(file.max_runs_per_source)
            .or(d.max_runs_per_source)
            .map(|n| n.max(1)),
        queue_max: flags.queue_max.or(file.queue_max).unwrap_or(d.queue_max),
        cache_max_bytes: flags.cache_max_bytes.or(file.cache_max_bytes).unwrap_or(d.cache_max_bytes),
        batch_size: flags.batch_size.or(file.batch_size),
        data_dir: flags.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
        control: flags.control.or(file.control),
        output_store: match (flags.output_store.or(file.output_store), flags.output_dir.or(file.output_dir)) {
            (Some(url), _) => Some(url),
            (None, Some(dir)) => Some(format!("file://{}", std::path::absolute(&dir)?.display())),
            (None, None) => None,
        },
        s3_endpoint: flags.s3_endpoint.or(file.s3_endpoint),
        lease: secs(flags.lease_secs.or(file.lease_secs).map(|s| s.max(1))).unwrap_or(d.lease),
        retention: ream_server::storage::Retention {
            max_age: flags
                .retention_secs
                .or(file.retention_secs)
                .map(std::time::Duration::from_secs)
                .unwrap_or(d.retention.max_age),
            max_bytes: flags.retention_bytes.or(file.retention_bytes).unwrap_or(d.retention.max_bytes),
        },
        keep_finished: flags.keep_runs.or(file.keep_runs).unwrap_or(d.keep_finished),
        grace: flags.grace_secs.or(file.grace_secs).map(std::time::Duration::from_secs).unwrap_or(d.grace),
        stall_after: flags.stall_secs.or(file.stall_secs).map(std::time::Duration::from_secs).unwrap_or(d.stall_after),
        run_memory_bytes: flags.run_memory_bytes.or(file.run_memory_bytes).unwrap_or(d.run_memory_bytes),
        request_timeout: flags
            .request_timeout_secs
            .or(file.request_timeout_secs)
            .map(std::time::Duration::from_secs)
            .unwrap_or(d.request_timeout),
        connections: ream_server::ConnectionLimits {
            header_timeout: secs(flags.header_timeout_secs.or(file.header_timeout_secs))
                .unwrap_or(d.connections.header_timeout),
            idle_timeout: secs(flags.idle_timeout_secs.or(file.idle_timeout_secs))
                .unwrap_or(d.connections.idle_timeout),
            max_connections: flags
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.connections.max_connections)
                .max(1),
        },
        auth: file.auth,
        auth_base,
        close_metrics: flags.close_metrics || file.close_metrics,
        audit_log: flags.audit_log.or(file.audit_log),
        allowed_hosts: if flags.allowed_hosts.is_empty() { file.allowed_hosts } else { flags.allowed_hosts },
        cors_origins: if flags.cors_origins.is_empty() { file.cors_origins } else { flags.cors_origins },
        delivery: ream_server::DeliveryConfig {
            smtp_url: flags.smtp_url.or(file.smtp_url),
            smtp_from: flags.smtp_from.or(file.smtp_from).unwrap_or(d.delivery.smtp_from.clone()),
            smtp_ca_file: flags.smtp_ca_file.or(file.smtp_ca_file),
            smtp_allowed_domains: first_given(flags.smtp_allowed_domains, file.smtp_allowed_domains),
            store_prefixes: first_given(flags.delivery_store_prefix, file.delivery_store_prefix),
            secrets_dir: flags.secrets_dir.or(file.secrets_dir),
            public_url: flags.public_url.or(file.public_url),
            attempts: flags.delivery_attempts.or(file.delivery_attempts).unwrap_or(d.delivery.attempts).max(1),
            backoff: match flags.delivery_backoff.or(file.delivery_backoff) {
                Some(t) => match ream_core::units::parse_duration(&t) {
                    Ok(t) => t,
                    Err(e) => return Ok(usage(format!("--delivery-backoff: {e}"))),
                },
                None => d.delivery.backoff,
            },
            link_ttl: match flags.delivery_link_ttl.or(file.delivery_link_ttl) {
                Some(t) => match ream_core::units::parse_duration(&t) {
                    Ok(t) => t,
                    Err(e) => return Ok(usage(format!("--delivery-link-ttl: {e}"))),
                },
                None => d.delivery.link_ttl,
            },
        },
        ..d
    };
    let state = match ream_server::AppState::new(config) {
        Ok(s) => s,
        Err(ream_server::ServerError::Reports(e)) => {
            eprintln!("ream: error: invalid reports\n{e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(e @ (ream_server::ServerError::Auth(_) | ream_server::ServerError::Delivery(_))) => return Ok(usage(e)),
        Err(e @ (ream_server::ServerError::Control(_) | ream_server::ServerError::Outputs(_))) => return Ok(usage(e)),
        Err(e) => return Err(e.into()),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        if !has_auth && !addr.ip().is_loopback() {
            if !allow_anonymous {
                return Ok(usage(format!(
                    "{addr} is not a loopback address and the server has no [auth]: anyone who can reach it could run every report. Configure [auth] (docs/security.md), or give --allow-anonymous"
                )));
            }
            eprintln!("ream: warning: serving {addr} without authentication (--allow-anonymous): anyone who can reach it may run every report");
        }
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            eprintln!("ream: shutting down: no new runs; running runs get the grace period");
        };
        eprintln!("ream: listening on http://{addr}");
        ream_server::serve_state(state, listener, shutdown).await.context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}

fn demo(dir: &Path, opts: ream_demo::DemoOptions) -> ExitCode {
    let t = std::time::Instant::now();
    let made = match ream_demo::create(dir, &opts) {
        Ok(made) => made,
        Err(e) if e.is_bad_input() => return usage(e),
        Err(e) => return report(Err(anyhow::Error::new(e).context(format!("creating the demo in {}", dir.display())))),
    };
    eprintln!(
        "ream: wrote {} ({} customers, {} invoices, {} invoice lines) in {:.1}s",
        made.database.display(),
        made.customers,
        made.invoices,
        made.lines,
        t.elapsed().as_secs_f64()
    );
    for r in &made.reports {
        eprintln!("ream: wrote {}", r.display());
    }
    ExitCode::SUCCESS
}

/// The config file's `[sources.NAME]` tables (none without a file); the file's other
/// settings are `serve`'s. A file that cannot be read or parsed exits 2, naming it.
fn named_sources(config: Option<&Path>) -> Result<ream_engine::NamedSources, ExitCode> {
    #[derive(serde::Deserialize)]
    struct SourcesOnly {
        #[serde(default)]
        sources: std::collections::BTreeMap<String, ream_engine::NamedSourceConfig>,
    }
    let Some(path) = config else { return Ok(Default::default()) };
    let text = std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    let file: SourcesOnly =
        toml::from_str(&text).map_err(|e| usage(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    ream_engine::NamedSources::new(file.sources, base).map_err(|e| usage(format!("{}: {e}", path.display())))
}

/// REAM_SOURCE: the source where neither a flag nor a spec names one.
fn env_source() -> Option<String> {
    std::env::var("REAM_SOURCE").ok().filter(|s| !s.trim().is_empty())
}

/// `ream new report`: the table described by its database, as a starter spec.
fn new_report(
    name: &str,
    source: Option<String>,
    sources: &ream_engine::NamedSources,
    table: &str,
    output: Option<PathBuf>,
    force: bool,
) -> ExitCode {
    if !ream_core::validate::is_report_id(name) {
        return usage(format!("`{name}` is not a report id: use letters, digits, `_` and `-`"));
    }
    let Some(url) = source.or_else(env_source) else {
        return usage("ream new report needs --source URL (or REAM_SOURCE)");
    };
    // A named source stays a name in the spec: the config keeps its URL and password.
    let resolved = match sources.resolve(&url) {
        Ok(u) => u.to_string(),
        Err(e) => return fail(&e),
    };
    let shape = match ream_engine::describe_table(&resolved, table, ream_core::CancelToken::new()) {
        Ok(shape) => shape,
        Err(e) => return fail(&e),
    };
    let columns: Vec<_> = shape
        .columns
        .into_iter()
        .map(|(name, type_name)| ream_core::starter::StarterColumn { name, type_name })
        .collect();
    let text = ream_core::starter::starter_spec(name, Some(&url), table, &columns, &shape.key);
    let path = output.unwrap_or_else(|| PathBuf::from(format!("{name}.yaml")));
    if path.as_os_str() == "-" {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    if path.exists() && !force {
        return usage(format!("{} exists: give --force to replace it", path.display()));
    }
    let written = ream_engine::OutputFile::create(&path).and_then(|mut f| {
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.commit()
    });
    match written {
        Ok(_) => {
            let shown = path.display();
            eprintln!(
                "ream: wrote {shown} ({} columns); check it with `ream validate --connect {shown}`",
                columns.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => report(Err(anyhow::anyhow!("{}: {e}", path.display()))),
    }
}

fn validate(specs: &[PathBuf], connect: bool, source: Option<String>, sources: ream_engine::NamedSources) -> ExitCode {
    let mut bad = false;
    for path in specs {
        let loaded = match load_file(path) {
            Ok(loaded) => loaded,
            Err(errors) => {
                bad = true;
                for e in &errors.0 {
                    println!("{e}");
                }
                continue;
            }
        };
        if !connect {
            println!("{}: ok", path.display());
            continue;
        }
        match check_against_source(&loaded, source.clone(), sources.clone(), ream_core::CancelToken::new()) {
            Ok(plan) => println!("{}: ok (source checked; it would read with {})", path.display(), plan.strategy),
            Err(EngineError::Spec(errors)) => {
                bad = true;
                for e in &errors.0 {
                    println!("{e}");
                }
            }
            Err(e) => {
                bad = true;
                println!("{}: {e}", path.display());
            }
        }
    }
    if bad {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

/// The Parquet options of a run: the flags over the defaults.
fn parquet_config(args: &RunArgs) -> ream_engine::ParquetConfig {
    let d = ream_engine::ParquetConfig::default();
    ream_engine::ParquetConfig {
        row_group_rows: args.parquet_row_group_rows.map_or(d.row_group_rows, |n| n as usize),
        compression: args.parquet_compression.unwrap_or(d.compression),
        ..d
    }
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ream: error: {msg}");
    ExitCode::from(EXIT_USAGE)
}

fn run(args: RunArgs, sources: ream_engine::NamedSources, quiet: bool) -> ExitCode {
    let to_stdout = args.output.as_deref().is_none_or(|p| p == Path::new("-"));
    // `x.csv.gz`: gzip, and the format from `x.csv`.
    let named = args.output.as_deref().filter(|_| !to_stdout).map(ream_engine::Compression::from_path);
    let compress = args.compress.or(named.as_ref().map(|n| n.0)).unwrap_or_default();
    let format = match (args.format, named.as_ref().map(|n| &n.1)) {
        (Some(FormatArg::Csv), _) => Format::Csv,
        (Some(FormatArg::Ndjson), _) => Format::Ndjson,
        (Some(FormatArg::Json), _) => Format::Json,
        (Some(FormatArg::Html), _) => Format::Html,
        (Some(FormatArg::Xlsx), _) => Format::Xlsx,
        (Some(FormatArg::Pdf), _) => Format::Pdf,
        (Some(FormatArg::Parquet), _) => Format::Parquet,
        (Some(FormatArg::Arrow), _) => Format::Arrow,
        (None, Some(p)) => match Format::from_path(p) {
            Some(f) => f,
            None => return usage(format!("cannot tell the format from `{}`: give --format", p.display())),
        },
        _ => Format::Csv,
    };
    let mut params = Vec::new();
    for p in &args.params {
        match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => params.push((k.trim().to_string(), v.into())),
            _ => return usage(format!("parameter `{p}`: expected NAME=VALUE")),
        }
    }
    let actor = match args.claims.is_empty() {
        true => None,
        false => match ream_core::Actor::from_pairs(&args.claims) {
            Ok(a) => Some(a),
            Err(e) => return usage(e),
        },
    };
    let binary = format.is_binary() || compress != ream_engine::Compression::None;
    if to_stdout && binary && std::io::stdout().is_terminal() {
        return usage(format!("{format} is binary and stdout is a terminal: give -o FILE, or redirect stdout"));
    }
    let show_progress = match args.progress {
        _ if quiet => false,
        ProgressArg::Always => true,
        ProgressArg::Never => false,
        ProgressArg::Auto => std::io::stderr().is_terminal(),
    };
    let opts = RunOptions {
        source: args.source.clone(),
        default_source: env_source(),
        sources,
        pushdown: !args.no_pushdown,
        parallel: args.parallel,
        format,
        params,
        batch_size: args.batch_size,
        batch_bytes: args.batch_bytes,
        strategy: args.strategy.map(|s| match s {
            StrategyArg::Auto => Strategy::Auto,
            StrategyArg::Keyset => Strategy::Keyset,
            StrategyArg::Cursor => Strategy::Cursor,
            StrategyArg::Offset => Strategy::Offset,
        }),
        count: match args.count {
            _ if !show_progress || args.no_count => CountMode::None,
            CountArg::Auto => CountMode::Auto,
            CountArg::Exact => CountMode::Exact,
            CountArg::Estimate => CountMode::Estimate,
            CountArg::None => CountMode::None,
        },
        snapshot: args.no_snapshot.then_some(Snapshot::Statement),
        retries: args.retries,
        resumes: ResumeLog::default(),
        batch_limit: Default::default(),
        render: ream_engine::RenderOptions {
            xlsx_flat: args.xlsx_flat,
            xlsx_outline: args.xlsx_outline,
            parquet: parquet_config(&args),
            csv_neutralize_formulas: args.csv_neutralize_formulas,
        },
        compress,
        compress_level: args.compress_level,
        split: match ream_engine::Split::new(args.split_rows, args.split_bytes, args.split_by.clone()) {
            Ok(split) => split,
            Err(e) => return usage(e),
        },
        burst: args.burst_dir.is_some(),
        actor,
    };
    if opts.split.is_some() && to_stdout {
        return usage("a split output is several files: give -o NAME");
    }
    let job = match &args.spec {
        Some(path) => match load_file(path) {
            Ok(spec) => Job::Spec(spec),
            Err(errors) => return usage(format!("invalid spec\n{errors}")),
        },
        None if args.table.is_none() && args.sql.is_none() => {
            return usage("give a SPEC, or --source with --table or --sql for an ad-hoc export")
        }
        None => Job::AdHoc(AdHoc { table: args.table.clone(), sql: args.sql.clone(), key: args.key.clone() }),
    };

    if args.explain {
        return match explain(&job, &opts) {
            Ok(plan) => {
                println!("strategy: {} ({})\norder: {}", plan.strategy, plan.reason, plan.order.join(", "));
                match &plan.pushdown {
                    Some(Ok(())) => println!("pushdown: yes"),
                    Some(Err(why)) => println!("pushdown: no ({why})"),
                    None => {}
                }
                match &plan.parallel {
                    Some(Ok(n)) => println!("parallel: {n} partitions"),
                    Some(Err(why)) => println!("parallel: no ({why})"),
                    None => {}
                }
                println!("sql: {}", plan.sql);
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    // A file goes through a temporary name beside it: its directory must exist.
    if let Some(dir) = args.output.as_deref().filter(|_| !to_stdout).and_then(Path::parent) {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            return usage(format!("cannot write to {}: no such directory", dir.display()));
        }
    }
    // A split's names, and its directory's checks, before the database is opened.
    let parts = match (&opts.split, args.output.as_deref()) {
        (Some(split), Some(output)) => {
            match ream_engine::DirParts::for_output(output, opts.format, opts.compress, split.by().is_some()) {
                Ok(parts) => Some(parts),
                Err(e) => return usage(e),
            }
        }
        _ => None,
    };
    let parts = match (parts, &args.burst_dir) {
        (None, Some(dir)) => match ream_engine::DirParts::for_bursts(dir) {
            Ok(parts) => Some(parts),
            Err(e) => return usage(e),
        },
        (parts, _) => parts,
    };
    let cancel = CancelToken::new();
    {
        let cancel = cancel.clone();
        // Ctrl-C and SIGTERM cancel the run: the query is interrupted, no file is left.
        let _ = ctrlc::set_handler(move || cancel.cancel());
    }
    let prepared = match prepare(job, &opts, cancel.clone()) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let plan = prepared.strategy().clone();
    if show_progress {
        eprintln!("ream: {}: {} ({})", prepared.meta.report, plan.strategy, plan.reason);
    }
    let run = start(prepared);
    let progress = run.progress();
    let ticker = show_progress.then(|| progress_bar(progress.clone(), opts.burst, cancel.clone()));
    let result = match (parts, args.output.as_deref()) {
        (Some(parts), _) => write_split(run, parts).map(Some),
        (None, Some(output)) if !to_stdout => run.write_file(output).map(Some),
        _ => run.write_to(&mut std::io::stdout().lock()),
    };
    if let Some((bar, handle)) = ticker {
        cancel_ticker(&bar, handle);
    }
    // The cancel requests to the database run on their own threads: let them leave
    // before the process ends, or a count could run on in the database.
    if cancel.is_cancelled() {
        cancel.settle(std::time::Duration::from_secs(5));
    }
    // A resumed run is complete, but not one snapshot: say so.
    for r in opts.resumes.list() {
        eprintln!(
            "ream: warning: the connection was lost after {} rows ({}); resumed (attempt {}) on a new snapshot{}",
            r.after_rows,
            r.error,
            r.attempt,
            r.cursor.map(|c| format!(" after {c}")).unwrap_or_default()
        );
    }
    match result {
        Ok(Some(summary)) => {
            if show_progress {
                let secs = summary.elapsed.as_secs_f64().max(1e-9);
                let bursts = match opts.burst {
                    true => format!(", {} bursts", progress.bursts.load(Ordering::Relaxed)),
                    false => String::new(),
                };
                eprintln!(
                    "ream: {} rows, {} bytes in {:.2}s ({:.0} rows/s){bursts}",
                    summary.rows,
                    summary.bytes,
                    secs,
                    summary.rows as f64 / secs
                );
            }
            ExitCode::SUCCESS
        }
        // The reader of standard output went away: a clean exit.
        Ok(None) => ExitCode::SUCCESS,
        Err(e) if cancel.is_cancelled() && matches!(e, EngineError::Cancelled) => {
            eprintln!("ream: interrupted; no output was kept");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(e) => fail(&e),
    }
}

/// A split run's parts and manifest beside `output` (or in it, split by a field).
fn write_split(
    run: ream_engine::Run,
    (mut dir, names): (ream_engine::DirParts, ream_engine::PartNames),
) -> Result<Summary, EngineError> {
    let (summary, manifest) = run.write_parts(&mut dir, &names)?;
    dir.remove_stale(&names, &manifest)
        .map_err(|e| EngineError::Output(format!("removing an earlier run's parts in {}: {e}", dir.dir().display())))?;
    Ok(summary)
}

fn fail(e: &EngineError) -> ExitCode {
    eprintln!("ream: error: {e}");
    if e.is_bad_input() {
        ExitCode::from(EXIT_USAGE)
    } else if matches!(e, EngineError::Cancelled) {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

type Ticker = (indicatif::ProgressBar, std::thread::JoinHandle<()>);

/// Rows and rows/s; percent and ETA once the count query has answered; a burst run's
/// bursts written and, once counted, their number. On a terminal, an indicatif bar;
/// elsewhere (logs, `--progress always` in a pipe), a plain line a second.
fn progress_bar(p: std::sync::Arc<Progress>, burst: bool, cancel: CancelToken) -> Ticker {
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr_with_hz(10))
    } else {
        indicatif::ProgressBar::hidden()
    };
    let rate = |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{} rows/s", indicatif::HumanCount(state.per_sec() as u64));
    };
    let spinner = indicatif::ProgressStyle::with_template("{spinner} {human_pos} rows  {rate}  {elapsed}{msg}")
        .expect("template")
        .with_key("rate", rate);
    let bounded = indicatif::ProgressStyle::with_template(
        "{bar:30} {percent:>3}%  {human_pos}/{human_len} rows  {rate}  ETA {eta}{msg}",
    )
    .expect("template")
    .with_key("rate", rate);
    bar.set_style(spinner);
    let b = bar.clone();
    let handle = std::thread::spawn(move || {
        let mut has_total = false;
        let mut last_line = std::time::Instant::now();
        // A log (not a terminal) gets a line when the number of bursts becomes known,
        // then one a second.
        let mut bursts_known = false;
        while !b.is_finished() && !cancel.is_cancelled() {
            let rows = p.rows.load(Ordering::Relaxed);
            if !has_total {
                if let Some(t) = p.total() {
                    b.set_length(t);
                    b.set_style(bounded.clone());
                    has_total = true;
                }
            }
            let bursts = burst.then(|| (p.bursts.load(Ordering::Relaxed), p.bursts_total()));
            if let Some(bursts) = bursts {
                b.set_message(format!("  {}", bursts_text(bursts)));
            }
            b.set_position(rows);
            let counted = bursts.is_some_and(|(_, total)| total.is_some()) && !bursts_known;
            bursts_known |= counted;
            if !tty && (counted || last_line.elapsed() >= Duration::from_secs(1)) {
                last_line = std::time::Instant::now();
                eprintln!("ream: {}", progress_line(rows, p.total(), bursts, p.started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (bar, handle)
}

/// `12 bursts`, or `12/500 bursts` once their number is known.
fn bursts_text((done, total): (u64, Option<u64>)) -> String {
    match total {
        Some(t) => format!("{done}/{t} bursts"),
        None => format!("{done} bursts"),
    }
}

/// `1200000 rows, 812345 rows/s, 45%, ETA 3s` (percent and ETA when the total is known),
/// then a burst run's `, 12/500 bursts`.
fn progress_line(rows: u64, total: Option<u64>, bursts: Option<(u64, Option<u64>)>, elapsed: Duration) -> String {
    let rate = rows as f64 / elapsed.as_secs_f64().max(1e-3);
    let mut s = format!("{rows} rows, {rate:.0} rows/s");
    if let Some(t) = total.filter(|t| *t > 0) {
        let pct = (rows as f64 / t as f64 * 100.0).min(100.0);
        let eta = if rate > 0.0 { (t.saturating_sub(rows)) as f64 / rate } else { 0.0 };
        s.push_str(&format!(", {pct:.0}%, ETA {eta:.0}s"));
    }
    if let Some(b) = bursts {
        s.push_str(&format!(", {}", bursts_text(b)));
    }
    s
}

fn cancel_ticker(bar: &indicatif::ProgressBar, handle: std::thread::JoinHandle<()>) {
    bar.finish_and_clear();
    let _ = handle.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_show_percent_and_eta_once_the_total_is_known() {
        assert_eq!(progress_line(500, None, None, Duration::from_secs(1)), "500 rows, 500 rows/s");
        assert_eq!(progress_line(500, Some(2000), None, Duration::from_secs(1)), "500 rows, 500 rows/s, 25%, ETA 3s");
    }

    #[test]
    fn a_burst_runs_progress_line_shows_its_bursts_and_their_number_once_counted() {
        let line = |total| progress_line(500, None, Some((12, total)), Duration::from_secs(1));
        assert_eq!(line(None), "500 rows, 500 rows/s, 12 bursts");
        assert_eq!(line(Some(40)), "500 rows, 500 rows/s, 12/40 bursts");
    }
}

//! Thousands of mutated specs (the demo reports with lines dropped, doubled and swapped,
//! values replaced by edge cases) through load, validate and a run in every format.
//! Every outcome must be a success or an error that says what is wrong (exit codes 0, 1
//! and 2 on the CLI): never a panic, never an "internal error", never a file left
//! behind by a failed run. In-process for the many, through the binary for a sample.
//!
//! `REAM_MUTATIONS` sets how many (default 2,000); `REAM_MUTATION_SEED` the seed.

mod common;
use common::*;

use std::path::Path;

use ream_core::load::load_file;
use ream_core::params::Given;
use ream_core::spec::ParamType;
use ream_core::CancelToken;
use ream_engine::{prepare, start, Format, Job, RunOptions};

/// xorshift64*: a fixed sequence for a seed, so a failure names its case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// Values a mutation puts where a value was.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "1e300",
    "-1e300",
    "9223372036854775808",
    "18446744073709551616",
    "NaN",
    "\"\"",
    "null",
    "[]",
    "{}",
    "NO",
    "01234",
    "\"date:%H:%M\"",
    "\"date:%Q\"",
    "\"currency:XYZ\"",
    "\"number:99\"",
    "\"percent:-3\"",
    "\"{missing}\"",
    "\"{total:currency} {{\"",
    "histogram",
    "line",
    "bar",
    "pie",
    "A0",
    "\"1e9mm\"",
    "region",
    "total",
    "id",
    "date",
    "\"SELECT 1 -- :x\"",
    "\"; DROP TABLE invoices\"",
    "\"\\u0000\"",
    "4611686018427387904",
];

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..1 + rng.below(3) {
        if lines.is_empty() {
            break;
        }
        let i = rng.below(lines.len());
        match rng.below(6) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
            // Replace the value after a `key:` (the line's last colon-separated part).
            3 | 4 => {
                if let Some(at) = lines[i].rfind(": ") {
                    let v = rng.pick(VALUES);
                    lines[i] = format!("{}: {v}", &lines[i][..at]);
                }
            }
            _ => {
                let cut = rng.below(lines[i].len() + 1);
                let cut = (0..=cut).rev().find(|c| lines[i].is_char_boundary(*c)).unwrap_or(0);
                lines[i].truncate(cut);
            }
        }
    }
    lines.join("\n")
}

/// A value for each declared parameter, so runs get past binding to the stages.
fn params_for(spec: &ream_core::Spec) -> Vec<(String, Given)> {
    spec.parameters
        .iter()
        .map(|(name, p)| {
            let v = match p.ty {
                ParamType::Date => "2023-01-01",
                ParamType::Timestamp => "2023-01-01T00:00:00",
                ParamType::Int => "1",
                ParamType::Decimal | ParamType::Float => "0",
                ParamType::Bool => "true",
                ParamType::String => "EU",
            };
            let v = if name.contains("end") { v.replace("2023", "2025") } else { v.to_string() };
            (name.clone(), Given::Text(v))
        })
        .collect()
}

/// One mutated spec, in process: loads or fails with errors; if it loads, each format's
/// run succeeds or fails without an internal error and leaves no file.
fn check_in_process(path: &Path, out_dir: &Path) -> Result<(), String> {
    let loaded = match load_file(path) {
        Ok(l) => l,
        Err(errors) => {
            let text = errors.to_string();
            return if text.trim().is_empty() { Err("a spec error with no message".into()) } else { Ok(()) };
        }
    };
    for format in Format::ALL {
        let mut opts = RunOptions::new(format);
        opts.params = params_for(loaded.spec());
        let out = out_dir.join(format!("out.{}", format.name()));
        let result =
            prepare(Job::Spec(loaded.clone()), &opts, CancelToken::new()).and_then(|p| start(p).write_file(&out));
        match result {
            Ok(_) => std::fs::remove_file(&out).map_err(|e| format!("{format:?}: succeeded but: {e}"))?,
            Err(e) => {
                let message = e.to_string();
                if message.contains("internal error") {
                    return Err(format!("{format:?}: {message}"));
                }
                let left = files_in(out_dir);
                if !left.is_empty() {
                    return Err(format!("{format:?} failed ({message}) and left {left:?}"));
                }
            }
        }
    }
    Ok(())
}

/// The same through the binary: exit 0, 1 or 2, no panic, no file after a failure.
fn check_cli(path: &Path, out_dir: &Path) -> Result<(), String> {
    let spec = path.to_str().unwrap();
    let v = run(&["validate", spec]);
    if ![0, 2].contains(&v.code) || v.stderr.contains("panicked") {
        return Err(format!("validate: exit {}: {}", v.code, v.stderr));
    }
    for format in Format::ALL {
        let out = out_dir.join(format!("cli.{}", format.name()));
        let mut args = vec!["run", spec, "--format", format.name(), "-o", out.to_str().unwrap()];
        let given = ["start_date=2023-01-01", "end_date=2025-12-31"];
        if v.code == 0 {
            for g in &given {
                args.extend(["-p", g]);
            }
        }
        let r = run(&args);
        if ![0, 1, 2].contains(&r.code) || r.stderr.contains("panicked") || r.stderr.contains("internal error") {
            return Err(format!("run {format:?}: exit {}: {}", r.code, r.stderr));
        }
        if r.code != 0 && !files_in(out_dir).is_empty() {
            return Err(format!("run {format:?} exited {} and left {:?}", r.code, files_in(out_dir)));
        }
        let _ = std::fs::remove_file(&out);
    }
    Ok(())
}

#[test]
fn mutated_specs_load_or_fail_clearly_and_run_or_fail_clearly_in_every_format() {
    let demo = demo(300);
    let count: usize = std::env::var("REAM_MUTATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000);
    let seed: u64 = std::env::var("REAM_MUTATION_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or(0x5eed);
    let mut rng = Rng(seed | 1);
    let originals: Vec<String> = ["sales_by_region", "customer_statement", "invoice_export", "category_months"]
        .iter()
        .map(|n| std::fs::read_to_string(demo.join("reports").join(format!("{n}.yaml"))).unwrap())
        .collect();
    // Beside the originals, so their relative source URL resolves.
    let path = demo.join("reports").join("mutated.yaml");
    let out_dir = tempfile::tempdir().unwrap();
    let (mut loaded, mut failures) = (0, vec![]);
    for case in 0..count {
        let text = mutate(&originals[case % originals.len()], &mut rng);
        std::fs::write(&path, &text).unwrap();
        let outcome = std::panic::catch_unwind(|| check_in_process(&path, out_dir.path())).unwrap_or_else(|p| {
            let m = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!("panic: {}", m.unwrap_or_default()))
        });
        let outcome = outcome.and_then(|_| if case % 40 == 0 { check_cli(&path, out_dir.path()) } else { Ok(()) });
        if load_file(&path).is_ok() {
            loaded += 1;
        }
        if let Err(e) = outcome {
            failures.push(format!("case {case} (seed {seed}): {e}\n--- spec ---\n{text}\n"));
            if failures.len() >= 3 {
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    eprintln!("{loaded} of {count} mutated specs loaded");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Neither everything refused (the mutations would test only the loader) nor nothing.
    assert!(loaded > count / 10 && loaded < count, "{loaded} of {count} mutated specs loaded");
}

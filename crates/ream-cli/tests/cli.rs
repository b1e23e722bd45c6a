//! The CLI around the runs: shell completions, the man page, and `ream demo` that will not
//! overwrite a directory in use.

mod common;
use common::*;

#[test]
fn completions_for_bash_zsh_and_fish_name_the_subcommands_and_their_options() {
    for (shell, marker) in [("bash", "complete -F _ream"), ("zsh", "#compdef ream"), ("fish", "complete -c ream")] {
        let r = run(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        let text = r.text();
        assert!(text.contains(marker), "{shell}: no `{marker}`");
        for word in ["serve", "validate", "split-rows", "compress-level"] {
            assert!(text.contains(word), "{shell}: `{word}` is not completed");
        }
    }
    let r = run(&["completions", "tcsh"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("invalid value 'tcsh'"), "{}", r.stderr);
}

#[test]
fn the_man_page_is_roff_that_man_renders() {
    let r = run(&["man"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let page = r.text();
    assert!(page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH ream"), "{page:.200}");
    assert!(page.contains("Stream reports of any size out of databases"));
    // `man -l` renders it where man is installed (it is on this machine kind).
    let rendered = std::process::Command::new("sh")
        .arg("-c")
        .arg("command -v man >/dev/null || exit 77; MANWIDTH=100 man -l - | col -b")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(page.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    if rendered.status.code() == Some(77) {
        eprintln!("\n*** SKIPPED: no man(1) to render the page ***\n");
        return;
    }
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(text.contains("NAME") && text.contains("SUBCOMMANDS"), "{text:.400}");
}

#[test]
fn demo_refuses_a_directory_with_files_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.txt"), "keep me").unwrap();
    let target = dir.path().to_str().unwrap();
    let r = run(&["demo", "--dir", target, "--rows", "60"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not empty: give --force"), "{}", r.stderr);
    assert_eq!(files_in(dir.path()), ["mine.txt"]);
    let r = run(&["demo", "--dir", target, "--rows", "60", "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(files_in(dir.path()), ["demo.sqlite", "mine.txt", "reports"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("mine.txt")).unwrap(), "keep me");
}

#[test]
fn ream_source_is_the_source_where_neither_the_flag_nor_the_spec_names_one() {
    let demo = demo(300);
    let db = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let with_env = |env: Option<&str>, args: &[&str]| {
        let mut c = ream();
        c.env_remove("REAM_SOURCE").args(args);
        if let Some(v) = env {
            c.env("REAM_SOURCE", v);
        }
        c.output().unwrap()
    };
    // An ad-hoc export takes it.
    let o = with_env(Some(&db), &["run", "--table", "regions", "--format", "csv"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("id,name"));
    // A spec's own source.url wins over it.
    let spec = demo.join("reports/invoice_export.yaml");
    let o = with_env(Some("sqlite:/nonexistent.sqlite"), &["run", spec.to_str().unwrap(), "-p", "status=paid"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A spec without one takes it; without it, the error says where a source can come from.
    let dir = tempfile::tempdir().unwrap();
    let bare = write(dir.path(), "r.yaml", "report: r\nsource: {table: regions}\n");
    let o = with_env(Some(&db), &["run", bare.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = with_env(None, &["run", bare.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("or set REAM_SOURCE"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_source_named_in_the_config_serves_the_flag_the_environment_and_the_specs() {
    let demo = demo(300);
    let dir = tempfile::tempdir().unwrap();
    // A relative SQLite path in the config is relative to the config file.
    std::fs::copy(demo.join("demo.sqlite"), dir.path().join("shop.sqlite")).unwrap();
    std::fs::create_dir(dir.path().join("specs")).unwrap();
    let config = write(dir.path(), "ream.toml", "[sources.shop]\nurl = \"sqlite:shop.sqlite\"\n");
    let config = config.to_str().unwrap();
    let spec = write(&dir.path().join("specs"), "r.yaml", "report: r\nsource: {url: shop, table: regions}\n");
    let spec = spec.to_str().unwrap();
    let direct = format!("sqlite:{}", demo.join("demo.sqlite").display());
    let expected = run(&["run", "--source", &direct, "--table", "regions"]);
    assert!(expected.code == 0 && expected.text().starts_with("id,name"), "{}", expected.stderr);
    let by_env = [("REAM_CONFIG", config)];
    for (args, env) in [
        (vec!["run", "--source", "shop", "--table", "regions"], &by_env[..]),
        (vec!["--config", config, "run", "--table", "regions"], &[("REAM_SOURCE", "shop")][..]),
        (vec!["run", spec], &by_env[..]),
    ] {
        let r = run_env(&args, env);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, expected.stdout, "{args:?}");
    }
    let checked = run_env(&["validate", "--connect", spec], &by_env);
    assert_eq!(checked.code, 0, "{}", checked.text());
    // A misspelt name is a usage error naming the one meant; without a config, none is known.
    let r = run_env(&["run", "--source", "shpo", "--table", "regions"], &by_env);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("source `shpo`") && r.stderr.contains("did you mean `shop`?"), "{}", r.stderr);
    let r = run(&["run", spec]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no config file names any"), "{}", r.stderr);
    // A config that does not parse names the file and the line.
    let bad = write(dir.path(), "bad.toml", "[sources.shop]\nurl = 5\n");
    let r = run(&["--config", bad.to_str().unwrap(), "run", spec]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bad.toml") && r.stderr.contains("line 2"), "{}", r.stderr);

    // `serve` reads the same file: the spec's named source, and /readyz probes it.
    let served = write(dir.path(), "serve.toml", "reports = \"specs\"\n[sources.shop]\nurl = \"sqlite:shop.sqlite\"\n");
    let outputs = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve_with(&[
        "--config",
        served.to_str().unwrap(),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--output-dir",
        outputs.path().to_str().unwrap(),
    ]);
    let body = ureq::get(&format!("http://{addr}/reports/r.csv")).call().map(|mut r| r.body_mut().read_to_vec());
    let ready = ureq::get(&format!("http://{addr}/readyz")).call().map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(body.unwrap().unwrap(), expected.stdout);
    assert_eq!(ready.unwrap(), 200);
}

/// `ream ARGS` (a `serve`), and the address it printed.
fn serve_with(args: &[&str]) -> (std::process::Child, String) {
    serve_with_env(args, &[])
}

/// As [`serve_with`], with `env` set.
fn serve_with_env(args: &[&str], env: &[(&str, &str)]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = ream().args(args).envs(env.iter().copied()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server printed its address").unwrap();
        if let Some(a) = line.strip_prefix("ream: listening on http://") {
            break a.to_string();
        }
    };
    // Keep reading its log, so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

#[test]
fn ream_reports_names_the_servers_reports_directory() {
    let demo = demo(300);
    let outputs = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve_with_env(
        &["serve", "--listen", "127.0.0.1:0", "--output-dir", outputs.path().to_str().unwrap()],
        &[("REAM_REPORTS", demo.join("reports").to_str().unwrap())],
    );
    let body = ureq::get(&format!("http://{addr}/reports")).call().unwrap().body_mut().read_to_string().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.contains("invoice_export") && body.contains("sales_by_region"), "{body}");
}

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let r = run(&["--version"]);
    assert_eq!(r.code, 0);
    let git = |args: &[&str]| {
        std::process::Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()
    };
    let text = r.text();
    let commit = text
        .strip_prefix(&format!("ream {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("not `ream VERSION (COMMIT)`: {text:?}"));
    if !git(&["rev-parse", "HEAD"]).is_some_and(|o| o.status.success()) {
        assert_eq!(commit, "unknown commit");
        return;
    }
    // HEAD, or (a commit made since the binary was built) one of its ancestors.
    assert!(commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()), "{commit}");
    let ancestor = git(&["merge-base", "--is-ancestor", commit, "HEAD"]).is_some_and(|o| o.status.success());
    assert!(ancestor, "{commit} is not HEAD or an ancestor of it");
}

#[test]
fn every_subcommands_help_describes_every_option_and_argument() {
    for sub in ["demo", "run", "validate", "schema", "serve", "completions", "man"] {
        let r = run(&[sub, "--help"]);
        assert_eq!(r.code, 0, "{sub}: {}", r.stderr);
        let text = r.text();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let is_item = line.starts_with("  ") && (t.starts_with('-') || t.starts_with('<') || t.starts_with('['));
            if !is_item {
                continue;
            }
            // An item is described on its line (after two spaces) or on the next, indented.
            let name_end = t.find("  ").unwrap_or(t.len());
            let rest = t[name_end..].trim();
            let on_its_line = !rest.is_empty() && !rest.starts_with('[');
            let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
            let below = lines.get(i + 1).is_some_and(|l| l.starts_with("          ")) && !next.is_empty();
            assert!(on_its_line || below, "{sub}: `{}` has no description", t);
        }
    }
}

#[test]
fn quiet_leaves_only_errors_and_verbose_is_accepted_everywhere() {
    let db = demo(100).join("demo.sqlite");
    let src = format!("sqlite:{}", db.display());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.csv");
    let loud =
        run(&["run", "--source", &src, "--table", "invoices", "-o", out.to_str().unwrap(), "--progress", "always"]);
    assert_eq!(loud.code, 0, "{}", loud.stderr);
    assert!(loud.stderr.contains(" rows, "), "progress asked for: {}", loud.stderr);
    let quiet = run(&[
        "-q",
        "run",
        "--source",
        &src,
        "--table",
        "invoices",
        "-o",
        out.to_str().unwrap(),
        "--progress",
        "always",
    ]);
    assert_eq!((quiet.code, quiet.stderr.as_str()), (0, ""));
    // An error still shows.
    let failed = run(&["run", "-q", "--source", &src, "--table", "no_such_table", "-o", out.to_str().unwrap()]);
    assert_eq!(failed.code, 2);
    assert!(failed.stderr.contains("no such table"), "{}", failed.stderr);
    assert_eq!(run(&["validate", "-vv", "--help"]).code, 0);
    let both = run(&["-q", "-v", "run", "--source", &src, "--table", "invoices"]);
    assert_eq!(both.code, 2, "-q and -v contradict: {}", both.stderr);
}

#[test]
fn ream_new_report_writes_a_spec_that_validates_and_runs_as_the_table_export() {
    let db = demo(200).join("demo.sqlite");
    let sqlite = format!("sqlite:{}", db.display());
    let Some(pg) = common::pg::PgDb::create("newreport") else { return };
    pg.exec(
        "CREATE TABLE orders (region TEXT, id BIGINT PRIMARY KEY, total NUMERIC(12,2)); \
             INSERT INTO orders SELECT 'r' || (i % 3), i, i * 1.25 FROM generate_series(1, 500) i",
    );
    let pg_url = pg.url.replacen("postgres://postgres@", "postgres://postgres:not-a-secret@", 1);
    for (url, table, key) in [(sqlite.as_str(), "invoices", "id"), (pg_url.as_str(), "orders", "id")] {
        let dir = tempfile::tempdir().unwrap();
        let r = run_in(Some(dir.path()), &["new", "report", "starter", "--source", url, "--table", table]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let spec = dir.path().join("starter.yaml");
        let text = std::fs::read_to_string(&spec).unwrap();
        assert!(!text.contains("not-a-secret"), "the password went into the file:\n{text}");
        assert!(text.contains(&format!("  key: [{key}]")), "{text}");
        // It checks, and runs as the table's own export (the password given again).
        let f = spec.to_str().unwrap();
        let checked = run(&["validate", "--connect", f, "--source", url]);
        assert_eq!(checked.code, 0, "{}\n{text}", checked.text());
        let ours = run(&["run", f, "--source", url, "-f", "csv"]);
        let export = run(&["run", "--source", url, "--table", table, "-f", "csv"]);
        assert_eq!(ours.code, 0, "{}", ours.stderr);
        assert!(ours.stdout == export.stdout && !ours.stdout.is_empty(), "{table}: the starter's rows differ");
        // Never over a file that is there.
        let again = run_in(Some(dir.path()), &["new", "report", "starter", "--source", url, "--table", table]);
        assert_eq!(again.code, 2, "{}", again.stderr);
        assert!(again.stderr.contains("starter.yaml exists: give --force"), "{}", again.stderr);
        assert_eq!(std::fs::read_to_string(&spec).unwrap(), text);
    }
}

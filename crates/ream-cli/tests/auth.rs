//! `ream serve` with `[auth]`, over real HTTP: tokens signed here with RSA, EC and Ed25519
//! keys that openssl makes (and a JWKS file of their public halves) or an HS256 secret,
//! API tokens from `ream token new`; every kind of 401, 403s that never reach the
//! database, runs scoped to their actor, signed download links, and PostgreSQL row-level
//! security through `source.session`.

mod common;
use common::pg::PgDb;
use common::server::Server;
use common::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value as Json};

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "ream";
const HS_SECRET: &str = "a shared secret of more than thirty-two bytes";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl").args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Keys made by openssl in `dir`: each private key's PEM, and the JWKS of the public ones.
struct Keys {
    rsa: Vec<u8>,
    /// An RSA key that is not in the JWKS, published under `rsa1`'s kid by an attacker.
    rogue: Vec<u8>,
    ec: Vec<u8>,
    ed: Vec<u8>,
}

fn keys(dir: &Path) -> Keys {
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let gen = |name: &str, args: &[&str]| {
        let out = path(name);
        let mut a = vec!["genpkey"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-out", &out]);
        let _ = openssl(&a);
        std::fs::read(path(name)).unwrap()
    };
    let rsa = gen("rsa.pem", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let rogue = gen("rogue.pem", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let ec = gen("ec.pem", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let ed = gen("ed.pem", &["-algorithm", "ED25519"]);
    let modulus = String::from_utf8(openssl(&["rsa", "-in", &path("rsa.pem"), "-noout", "-modulus"])).unwrap();
    let hex = modulus.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let public = |name: &str| openssl(&["pkey", "-in", &path(name), "-pubout", "-outform", "DER"]);
    let ec_pub = public("ec.pem");
    let point = &ec_pub[ec_pub.len() - 64..];
    let ed_pub = public("ed.pem");
    let jwks = json!({ "keys": [
        { "kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig", "n": b64(&n), "e": "AQAB" },
        { "kty": "EC", "kid": "ec1", "alg": "ES256", "crv": "P-256", "x": b64(&point[..32]), "y": b64(&point[32..]) },
        { "kty": "OKP", "kid": "ed1", "alg": "EdDSA", "crv": "Ed25519", "x": b64(&ed_pub[ed_pub.len() - 32..]) },
    ]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
    std::fs::write(dir.join("hs.secret"), format!("{HS_SECRET}\n")).unwrap();
    Keys { rsa, rogue, ec, ed }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims a valid token carries, for `sub` with `roles`, plus `extra`.
fn claims(sub: &str, roles: &[&str], extra: Json) -> Json {
    let mut c = json!({ "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "roles": roles });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Json) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(String::from);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn rs(keys: &Keys, claims: &Json) -> String {
    sign(Algorithm::RS256, Some("rsa1"), &EncodingKey::from_rsa_pem(&keys.rsa).unwrap(), claims)
}

/// A server of the demo's reports (one of them for role `finance` only), with `[auth]`:
/// the JWKS, the HS256 secret, and `tokens` as `[[auth.tokens]]` (TOML text).
fn server(dir: &Path, tokens: &str, extra_toml: &str) -> Server {
    let demo = demo(300);
    let reports = demo.join("reports");
    let finance = std::fs::read_to_string(reports.join("sales_by_region.yaml")).unwrap();
    let finance = finance.replacen("report: sales_by_region", "report: finance_only\naccess: { roles: [finance] }", 1);
    std::fs::write(reports.join("finance_only.yaml"), finance).unwrap();
    // SQL that the database refuses: its error quotes the statement.
    write(
        &reports,
        "broken.yaml",
        "report: broken\nsource:\n  url: \"sqlite:../demo.sqlite\"\n  table: invoices\n  where: \"no_such_column = 1\"\n",
    );
    // 50M generated rows: a run that lasts until it is cancelled.
    write(
        &reports,
        "endless.yaml",
        "report: endless\nsource:\n  url: \"sqlite:../demo.sqlite\"\n  \
         sql: \"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000) SELECT x FROM c\"\n",
    );
    let config = format!(
        "reports = \"{reports}\"\n{extra_toml}\n[auth]\n[auth.jwt]\njwks_file = \"jwks.json\"\nhs256_secret_file = \"hs.secret\"\n\
         issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\nleeway_secs = 0\n{tokens}",
        reports = reports.display()
    );
    let file = write(dir, "ream.toml", &config);
    Server::start_args(&["--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()], &[])
}

fn get_as(s: &Server, token: Option<&str>, path: &str) -> (u16, ureq::http::HeaderMap, Json) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let (status, h, body) = s.get_with(path, &headers);
    (status, h, serde_json::from_slice(&body).unwrap_or(Json::Null))
}

#[test]
fn every_kind_of_bad_token_gets_a_json_401_with_www_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let s = server(dir.path(), "", "");
    let ok = claims("alice", &[], json!({}));
    let rsa = EncodingKey::from_rsa_pem(&k.rsa).unwrap();
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(ok.to_string().as_bytes()));
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no header", None, "no bearer token"),
        ("another scheme", Some("Basic YWxpY2U6eA==".into()), "scheme must be Bearer"),
        ("an empty token", Some("Bearer ".into()), "expected `Bearer <token>`"),
        ("not a JWT", Some("Bearer a.b".into()), "not a JWT"),
        ("expired", Some(rs(&k, &claims("alice", &[], json!({ "exp": now() - 5 })))), "expired"),
        ("not yet valid", Some(rs(&k, &claims("alice", &[], json!({ "nbf": now() + 300 })))), "not valid yet"),
        (
            "signed by another key",
            Some(sign(Algorithm::RS256, Some("rsa1"), &EncodingKey::from_rsa_pem(&k.rogue).unwrap(), &ok)),
            "signature does not verify",
        ),
        ("the wrong issuer", Some(rs(&k, &claims("alice", &[], json!({ "iss": "https://evil.test" })))), "issuer"),
        ("the wrong audience", Some(rs(&k, &claims("alice", &[], json!({ "aud": "other" })))), "audience"),
        ("alg none", Some(none), "algorithm none is not accepted"),
        ("an unknown kid", Some(sign(Algorithm::RS256, Some("nobody"), &rsa, &ok)), "no key with the token's kid"),
        ("RS384", Some(sign(Algorithm::RS384, Some("rsa1"), &rsa, &ok)), "algorithm RS384 is not accepted"),
        (
            "HS256 with another secret",
            Some(sign(
                Algorithm::HS256,
                None,
                &EncodingKey::from_secret(b"not the secret at all, but long enough"),
                &ok,
            )),
            "signature does not verify",
        ),
        ("an unknown API token", Some("ream_nothing".into()), "unknown API token"),
    ];
    for (what, token, message) in cases {
        let token =
            token.map(|t| if t.starts_with("Bearer") || t.starts_with("Basic") { t } else { format!("Bearer {t}") });
        let headers: Vec<(&str, &str)> = token.iter().map(|t| ("authorization", t.as_str())).collect();
        let (status, h, body) = s.get_with("/runs", &headers);
        let body: Json = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["kind"], "unauthorized", "{what}");
        let text = body["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{what}: {text}");
        let www = h.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(www.starts_with("Bearer"), "{what}: {www}");
        if let Some(t) = &token {
            let secret = t.rsplit(' ').next().unwrap();
            assert!(secret.len() < 8 || !text.contains(secret), "{what}: the message repeats the token");
        }
    }
    // Every accepted algorithm, each with its own key.
    let ec = EncodingKey::from_ec_pem(&k.ec).unwrap();
    let ed = EncodingKey::from_ed_pem(&k.ed).unwrap();
    let hs = EncodingKey::from_secret(HS_SECRET.as_bytes());
    for (alg, kid, key) in [
        (Algorithm::RS256, Some("rsa1"), &rsa),
        (Algorithm::ES256, Some("ec1"), &ec),
        (Algorithm::EdDSA, Some("ed1"), &ed),
        (Algorithm::HS256, None, &hs),
    ] {
        let (status, _, body) = get_as(&s, Some(&sign(alg, kid, key, &ok)), "/runs");
        assert_eq!(status, 200, "{alg:?}: {body}");
    }
    // The RSA public key is no HMAC secret: an HS256 token signed with it is refused.
    let n_as_secret = std::fs::read(dir.path().join("jwks.json")).unwrap();
    let (status, _, _) =
        get_as(&s, Some(&sign(Algorithm::HS256, Some("rsa1"), &EncodingKey::from_secret(&n_as_secret), &ok)), "/runs");
    assert_eq!(status, 401);
    // Health and metrics stay open.
    assert_eq!(s.get("/healthz").0, 200);
    assert_eq!(s.get("/metrics").0, 200);
}

#[test]
fn a_report_the_actor_may_not_run_is_a_403_that_never_reaches_the_database() {
    let Some(db) = PgDb::create("forbid") else { return };
    let reader = db.tenant_invoices(50);
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    write(
        &reports,
        "ledger.yaml",
        &format!(
            "report: ledger\naccess: {{ roles: [finance] }}\nsource:\n  url: {reader}\n  table: invoices\n  key: [id]\n  \
             session: {{ app.tenant: \"{{actor.tenant}}\" }}\n"
        ),
    );
    let config = format!(
        "reports = \"reports\"\n[auth]\n[auth.jwt]\njwks_file = \"jwks.json\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n"
    );
    let file = write(dir.path(), "ream.toml", &config);
    let s = Server::start_args(&["--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()], &[]);
    let backends = || -> i64 {
        db.client()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'ream'",
                &[&db.name],
            )
            .unwrap()
            .get(0)
    };
    let clerk = rs(&k, &claims("clerk", &["sales"], json!({ "tenant": 1 })));
    let (status, _, body) = get_as(&s, Some(&clerk), "/reports/ledger.csv");
    assert_eq!((status, body["error"]["kind"].as_str()), (403, Some("forbidden")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("finance"), "{body}");
    let (status, _, _) = get_as(&s, Some(&clerk), "/reports/ledger");
    assert_eq!(status, 403);
    let (_, _, list) = get_as(&s, Some(&clerk), "/reports");
    assert_eq!(list["reports"], json!([]), "a report the actor may not run is not listed");
    // A finance actor without the claim the report uses: 403 naming the claim.
    let no_tenant = rs(&k, &claims("fin", &["finance"], json!({})));
    let (status, _, body) = get_as(&s, Some(&no_tenant), "/reports/ledger.csv");
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(":actor.tenant"), "{body}");
    let (_, _, runs) = get_as(&s, Some(&no_tenant), "/runs");
    assert_eq!(runs["runs"], json!([]), "a refused request is not a run");
    assert_eq!(backends(), 0, "a 403 opened a connection to the database");
    // The same report for an actor who may run it does reach it.
    let fin = rs(&k, &claims("fin", &["finance"], json!({ "tenant": 2 })));
    let (status, _, body) = s.get_with("/reports/ledger.csv", &[("authorization", &format!("Bearer {fin}"))]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text.lines().count(), 51, "{text}");
    assert!(text.lines().skip(1).all(|l| l.split(',').nth(1) == Some("2")), "{text}");
    assert!(backends() > 0, "the database was never reached, so the 0 above proves nothing");
}

#[test]
fn runs_are_scoped_to_their_actor_and_an_admin_sees_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let _ = keys(dir.path());
    let (toml, t) = api_tokens(&[("alice", &[], 1), ("bob", &[], 2), ("root", &["admin"], 0)]);
    let mut s = server(dir.path(), &toml, "");
    let body = r#"{"report": "sales_by_region", "format": "csv", "parameters": {"start_date": "2023-01-01", "end_date": "2025-12-31"}}"#;
    let mut ids = vec![];
    for token in &t[..2] {
        s.token = Some(token.clone());
        let (status, _, run) = s.post("/runs", body);
        assert_eq!(status, 202, "{run}");
        assert_eq!(run["actor"], if ids.is_empty() { "alice" } else { "bob" });
        ids.push(run["id"].as_str().unwrap().to_string());
        s.finished(ids.last().unwrap());
    }
    let listed = |token: &str| -> Vec<String> {
        let (_, _, l) = get_as(&s, Some(token), "/runs");
        l["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(listed(&t[0]), vec![ids[0].clone()]);
    assert_eq!(listed(&t[1]), vec![ids[1].clone()]);
    let mut all = listed(&t[2]);
    all.sort();
    let mut both = ids.clone();
    both.sort();
    assert_eq!(all, both, "the admin sees both runs");
    // Bob cannot read, follow, download or cancel Alice's run: it is not there for him.
    for path in ["", "/events", "/output"] {
        let (status, _, body) = get_as(&s, Some(&t[1]), &format!("/runs/{}{path}", ids[0]));
        assert_eq!(status, 404, "{path}: {body}");
    }
    s.token = Some(t[1].clone());
    assert_eq!(s.delete(&format!("/runs/{}", ids[0])).0, 404);
    // Alice and the admin can.
    for token in [&t[0], &t[2]] {
        let (status, _, run) = get_as(&s, Some(token), &format!("/runs/{}", ids[0]));
        assert_eq!((status, run["status"].as_str()), (200, Some("succeeded")), "{run}");
    }
}

#[test]
fn a_signed_link_downloads_its_output_after_the_bearer_token_expires_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let (toml, t) = api_tokens(&[("bob", &[], 2)]);
    let mut s = server(dir.path(), &toml, "");
    // A token that expires in 3 s (no leeway is configured).
    let short = rs(&k, &claims("alice", &[], json!({ "exp": now() + 3 })));
    s.token = Some(short.clone());
    let body = r#"{"report": "sales_by_region", "format": "csv", "parameters": {"start_date": "2023-01-01", "end_date": "2025-12-31"}}"#;
    let (status, _, run) = s.post("/runs", body);
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let done = s.finished(&id);
    let link = done["links"]["output"].as_str().unwrap().to_string();
    assert!(link.starts_with(&format!("/runs/{id}/output?token=")), "{link}");
    let (_, _, direct) = s.get(&format!("/runs/{id}/output"));
    std::thread::sleep(Duration::from_millis(4500));
    s.token = None;
    assert_eq!(get_as(&s, Some(&short), "/runs").0, 401, "the bearer token has expired");
    let (status, _, bytes) = s.get(&link);
    assert_eq!(status, 200);
    assert_eq!(bytes, direct, "the link serves the run's output");
    let (status, _, part) = s.get_with(&link, &[("range", "bytes=0-9")]);
    assert_eq!((status, part.as_slice()), (206, &direct[..10]));
    let token = link.split_once("?token=").unwrap().1;
    // Not for another run, not for anything else, not as a bearer token.
    assert_eq!(s.get(&format!("/runs/other-1/output?token={token}")).0, 403);
    assert_eq!(s.get(&format!("/runs/{id}?token={token}")).0, 401);
    assert_eq!(s.get(&format!("/runs?token={token}")).0, 401);
    assert_eq!(get_as(&s, Some(token), "/runs").0, 401);
    assert_eq!(get_as(&s, Some(token), &format!("/runs/{id}/output")).0, 401);
    // Bob, whose run it is not, gets 404 with his bearer token, and the link is his way in.
    assert_eq!(get_as(&s, Some(&t[0]), &format!("/runs/{id}/output")).0, 404);
}

#[test]
fn without_auth_a_non_loopback_address_needs_allow_anonymous() {
    let demo = demo(50);
    let reports = demo.join("reports");
    let out = ream().args(["serve", "--listen", "0.0.0.0:0", "--reports", reports.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address") && err.contains("--allow-anonymous"), "{err}");
    let s = Server::start_args(
        &["--listen", "0.0.0.0:0", "--reports", reports.to_str().unwrap(), "--allow-anonymous"],
        &[],
    );
    assert!(s.addr.starts_with("0.0.0.0:"), "{}", s.addr);
}

#[test]
fn a_bad_auth_config_is_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(50);
    for (toml, says) in [
        ("[auth]\n[[auth.tokens]]\nsha256 = \"abc\"\nsub = \"x\"\n", "auth.tokens[0].sha256"),
        ("[auth]\n[auth.jwt]\njwks_file = \"missing.json\"\n", "auth.jwt.jwks_file"),
        ("[auth]\n", "[auth] needs [auth.jwt] or at least one [[auth.tokens]]"),
        ("[auth]\n[auth.jwt]\nhs256_secret_file = \"short\"\n", "at least 32 bytes"),
    ] {
        write(dir.path(), "short", "tiny");
        let file = write(dir.path(), "ream.toml", &format!("reports = \"{}\"\n{toml}", demo.join("reports").display()));
        let out =
            ream().args(["serve", "--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {err}");
        assert!(err.contains(says), "{toml}: {err}");
    }
}

/// The tenant report's spec: through `source.session` (PostgreSQL row-level security)
/// or through `where: tenant_id = :actor.tenant` (any database).
fn tenant_spec(dir: &Path, url: &str, session: bool) -> PathBuf {
    let how = match session {
        true => "  session: { app.tenant: \"{actor.tenant}\" }\n",
        false => "  where: \"tenant_id = :actor.tenant\"\n",
    };
    write(
        dir,
        "tenant.yaml",
        &format!("report: tenant\nsource:\n  url: \"{url}\"\n  table: invoices\n  key: [id]\n{how}"),
    )
}

#[test]
fn two_hundred_concurrent_runs_for_two_tenants_see_no_foreign_row() {
    let Some(db) = PgDb::create("rls") else { return };
    let reader = db.tenant_invoices(300);
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    tenant_spec(&reports, &reader, true);
    let (toml, t) = api_tokens(&[("t1", &[], 1), ("t2", &[], 2)]);
    let file = write(dir.path(), "ream.toml", &format!("reports = \"reports\"\nmax_runs = 32\n[auth]\n{toml}"));
    let s = Server::start_args(&["--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()], &[]);
    let s = std::sync::Arc::new(s);
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let (s, t) = (s.clone(), t.clone());
            std::thread::spawn(move || {
                let mut checked = 0;
                for j in 0..10 {
                    let tenant = (i + j) % 2;
                    let auth = format!("Bearer {}", t[tenant]);
                    let (status, _, body) = s.get_with("/reports/tenant.csv", &[("authorization", &auth)]);
                    let text = String::from_utf8_lossy(&body).to_string();
                    assert_eq!(status, 200, "{text}");
                    let rows: Vec<&str> = text.lines().skip(1).collect();
                    assert_eq!(rows.len(), 300, "tenant {}: {} rows", tenant + 1, rows.len());
                    let foreign =
                        rows.iter().filter(|r| r.split(',').nth(1) != Some(&(tenant + 1).to_string())).count();
                    assert_eq!(foreign, 0, "tenant {} saw {foreign} foreign rows", tenant + 1);
                    checked += 1;
                }
                checked
            })
        })
        .collect();
    let runs: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(runs, 200);
    // A request cannot set a claim: `actor.tenant` is no parameter of any report.
    let auth = format!("Bearer {}", t[0]);
    let (status, _, body) = s.get_with("/reports/tenant.csv?actor.tenant=2", &[("authorization", &auth)]);
    let body: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error"]["kind"].as_str()), (400, Some("bad_parameter")), "{body}");
    // Without the setting, the policy lets the reader see nothing: it is the session
    // setting, not the URL, that chose the rows.
    let out = ream().args(["run", "--source", &reader, "--table", "invoices"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "the policy needs app.tenant: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn the_same_tenant_report_through_actor_claims_gives_the_same_rows_on_every_database() {
    let Some(pg) = PgDb::create("claims") else { return };
    let reader = pg.tenant_invoices(40);
    let dir = tempfile::tempdir().unwrap();
    let csv = pg.psql("COPY (SELECT * FROM invoices ORDER BY id) TO STDOUT (FORMAT csv, HEADER)");
    let csv_path = dir.path().join("invoices.csv");
    std::fs::write(&csv_path, &csv).unwrap();
    let sqlite = dir.path().join("inv.sqlite");
    let conn = rusqlite::Connection::open(&sqlite).unwrap();
    conn.execute_batch(
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, amount DECIMAL(12,2) NOT NULL)",
    )
    .unwrap();
    let mut r = csv::Reader::from_reader(csv.as_slice());
    for rec in r.records() {
        let rec = rec.unwrap();
        conn.execute("INSERT INTO invoices VALUES (?1, ?2, ?3)", [&rec[0], &rec[1], &rec[2]]).unwrap();
    }
    drop(conn);
    let run = |spec: &Path| {
        let out = ream()
            .args(["run", spec.to_str().unwrap(), "--claim", "tenant=2", "--claim", "sub=alice"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let pg_dir = tempfile::tempdir().unwrap();
    let by_session = run(&tenant_spec(pg_dir.path(), &reader, true));
    let pg_where = tempfile::tempdir().unwrap();
    let by_where_pg = run(&tenant_spec(pg_where.path(), &pg.url, false));
    let lite = tempfile::tempdir().unwrap();
    let by_where_sqlite = run(&tenant_spec(lite.path(), &format!("sqlite:{}", sqlite.display()), false));
    let text = String::from_utf8(by_session.clone()).unwrap();
    assert_eq!(text.lines().count(), 41, "{text}");
    assert!(text.lines().skip(1).all(|l| l.split(',').nth(1) == Some("2")), "{text}");
    assert_eq!(by_where_pg, by_session, "PostgreSQL through :actor.tenant");
    assert_eq!(by_where_sqlite, by_session, "SQLite through :actor.tenant");
    if let Some(my) = common::my::MyDb::create("claims") {
        my.sql("CREATE TABLE invoices (id INT PRIMARY KEY, tenant_id INT NOT NULL, amount DECIMAL(12,2) NOT NULL)");
        my.load_csv("invoices", &csv_path);
        let d = tempfile::tempdir().unwrap();
        assert_eq!(run(&tenant_spec(d.path(), &my.url, false)), by_session, "MariaDB through :actor.tenant");
    }
    // Without the claim, the CLI refuses before reading, naming it.
    let out = ream()
        .args(["run", tenant_spec(lite.path(), &format!("sqlite:{}", sqlite.display()), false).to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":actor.tenant") && err.contains("--claim"), "{err}");
}

/// A raw HTTP/1.1 request (any Host, any headers); the status and the response head.
fn raw(addr: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split("\r\n\r\n").next().unwrap_or("").to_string())
}

#[test]
fn a_web_page_cannot_use_a_local_server_with_or_without_auth() {
    let demo = demo(50);
    let s = Server::start(&demo.join("reports"), &[]);
    let port = s.addr.rsplit(':').next().unwrap().to_string();
    let get = |host: &str| raw(&s.addr, &format!("GET /reports HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
    // DNS rebinding: a page on attacker.example resolves its name to 127.0.0.1.
    let (status, head) = get("attacker.example");
    assert_eq!(status, 403, "{head}");
    assert_eq!(get(&format!("attacker.example:{port}")).0, 403);
    assert_eq!(get(&format!("127.0.0.1:{port}")).0, 200);
    assert_eq!(get(&format!("localhost:{port}")).0, 200);
    // A cross-site POST: a foreign Origin, a browser's cross-site mark, a text/plain body.
    let body = r#"{"report": "invoice_export", "format": "csv"}"#;
    let post = |extra: &str, ct: &str| {
        raw(
            &s.addr,
            &format!(
                "POST /runs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Content-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    assert_eq!(post("Origin: https://attacker.example\r\n", "application/json").0, 403);
    assert_eq!(post("Sec-Fetch-Site: cross-site\r\n", "application/json").0, 403);
    let (status, head) = post("", "text/plain");
    assert_eq!(status, 415, "{head}");
    assert_eq!(post(&format!("Origin: http://127.0.0.1:{port}\r\n"), "application/json").0, 202);
    let (_, runs) = s.json("/runs");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "only the same-origin POST started a run");
    // CORS is off: no Access-Control header for any origin.
    let (_, h, _) = s.get_with("/reports", &[("origin", "https://attacker.example")]);
    assert!(h.get("access-control-allow-origin").is_none());
    // Frames and sniffing are refused everywhere; the dashboard and HTML reports carry a CSP.
    let (_, h, page) = s.get("/");
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
    let csp = h.get("content-security-policy").unwrap().to_str().unwrap().to_string();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'nonce-"), "{csp}");
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(String::from_utf8_lossy(&page).contains(&format!("<script nonce=\"{nonce}\">")));
    let (status, h, _) = s.get("/reports/invoice_export.html");
    assert_eq!(status, 200);
    let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    // --allowed-hosts names the server behind a proxy; then only those names.
    let proxied = Server::start(&demo.join("reports"), &["--allowed-hosts", "reports.example.com"]);
    let get =
        |host: &str| raw(&proxied.addr, &format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
    assert_eq!(get("reports.example.com").0, 200);
    assert_eq!(get(&proxied.addr).0, 403);
}

#[test]
fn a_configured_origin_may_call_the_api_from_a_browser() {
    let demo = demo(50);
    let s = Server::start(&demo.join("reports"), &["--cors-origins", "https://app.example.com"]);
    let port = s.addr.rsplit(':').next().unwrap().to_string();
    let (status, head) = raw(
        &s.addr,
        &format!(
            "OPTIONS /runs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://app.example.com\r\n\
             Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("access-control-allow-origin: https://app.example.com"), "{head}");
    let (_, h, _) = s.get_with("/reports", &[("origin", "https://evil.example.com")]);
    assert!(h.get("access-control-allow-origin").is_none());
}

#[test]
fn the_audit_log_records_each_event_with_the_outputs_sha256() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let (toml, t) = api_tokens(&[("alice", &[], 1), ("root", &["admin"], 0)]);
    let log = dir.path().join("audit.jsonl");
    let mut s = server(dir.path(), &toml, &format!("audit_log = \"{}\"", log.display()));
    s.token = Some(t[0].clone());
    let body = r#"{"report": "sales_by_region", "format": "csv", "parameters": {"start_date": "2023-01-01", "end_date": "2025-12-31"}}"#;
    let (_, _, run) = s.post("/runs", body);
    let id = run["id"].as_str().unwrap().to_string();
    let done = s.finished(&id);
    let (status, _, output) = s.get(&format!("/runs/{id}/output"));
    assert_eq!(status, 200);
    let (_, _, streamed) = s.get("/reports/invoice_export.csv?status=paid");
    let (_, _, slow) = s.post("/runs", r#"{"report": "endless", "format": "csv"}"#);
    let cancel_id = slow["id"].as_str().unwrap().to_string();
    assert_eq!(s.delete(&format!("/runs/{cancel_id}")).0, 202);
    s.finished(&cancel_id);
    s.token = None;
    let expired = rs(&k, &claims("mallory", &[], json!({ "exp": now() - 100 })));
    assert_eq!(get_as(&s, Some(&expired), "/runs").0, 401);
    assert_eq!(get_as(&s, Some(&t[0]), "/reports/finance_only.csv").0, 403);
    assert_eq!(get_as(&s, Some(&t[0]), "/audit").0, 403, "the log is for admins");
    let (status, _, audit) = get_as(&s, Some(&t[1]), "/audit?since=2000-01-01T00:00:00Z");
    assert_eq!(status, 200, "{audit}");
    let events = audit["events"].as_array().unwrap().clone();
    let lines: Vec<Json> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() >= events.len() && events.len() >= 8, "{lines:?}");
    let find = |event: &str, run: &str| {
        lines
            .iter()
            .find(|l| l["event"] == event && (run.is_empty() || l["run"] == run))
            .cloned()
            .unwrap_or_else(|| panic!("no {event} for {run}: {lines:?}"))
    };
    let started = find("run_started", &id);
    assert_eq!(
        (started["actor"].as_str(), started["report"].as_str(), started["format"].as_str()),
        (Some("alice"), Some("sales_by_region"), Some("csv"))
    );
    assert_eq!(started["parameters"]["start_date"], "2023-01-01");
    assert!(started["client"].as_str().unwrap().starts_with("127.0.0.1:"), "{started}");
    assert!(started["user_agent"].as_str().is_some_and(|u| u.starts_with("ureq")), "{started}");
    let finished = find("run_finished", &id);
    assert_eq!(finished["outcome"], "succeeded");
    assert_eq!(finished["rows"], done["rows"]);
    assert_eq!(finished["bytes"].as_u64(), Some(output.len() as u64));
    assert_eq!(finished["sha256"].as_str().unwrap(), ream_auth_hex(&sha2::Sha256::digest(&output)));
    let streamed_run = lines
        .iter()
        .find(|l| l["event"] == "run_finished" && l["report"] == "invoice_export" && l["mode"] == "sync")
        .unwrap();
    assert_eq!(streamed_run["sha256"].as_str().unwrap(), ream_auth_hex(&sha2::Sha256::digest(&streamed)));
    let download = find("download", &id);
    assert_eq!(
        (download["by"].as_str(), download["path"].as_str()),
        (Some("alice"), Some(format!("/runs/{id}/output").as_str()))
    );
    assert_eq!(find("cancel", &cancel_id)["by"], "alice");
    let denied: Vec<&Json> = lines.iter().filter(|l| l["event"] == "denied").collect();
    assert!(
        denied.iter().any(|d| d["status"] == 401 && d["reason"].as_str().unwrap().contains("expired")),
        "{denied:?}"
    );
    assert!(
        denied.iter().any(|d| d["status"] == 403 && d["actor"] == "alice" && d["path"] == "/reports/finance_only.csv"),
        "{denied:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [&t[0], &t[1], &expired] {
        assert!(!text.contains(secret.as_str()), "a token is in the audit log");
    }
    // `since` filters; a bad one is a 400.
    let (_, _, later) = get_as(&s, Some(&t[1]), "/audit?since=2999-01-01T00:00:00Z");
    assert_eq!(later["events"], json!([]));
    assert_eq!(get_as(&s, Some(&t[1]), "/audit?since=yesterday").0, 400);
}

fn ream_auth_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_dashboard_asks_once_for_a_token_and_keeps_it_out_of_urls() {
    let dir = tempfile::tempdir().unwrap();
    let _ = keys(dir.path());
    let (toml, t) = api_tokens(&[("alice", &[], 1)]);
    let s = server(dir.path(), &toml, "");
    let script = r#"
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
(async () => {
  const browser = await LAUNCH;
  const page = await browser.newPage();
  const urls = [], notes = [];
  page.on('request', r => urls.push(r.url()));
  page.on('console', m => notes.push(m.text()));
  page.on('response', r => notes.push(r.request().method() + ' ' + r.url().replace(/token=.*/, 'token=…') + ' ' + r.status()));
  page.on('dialog', d => { notes.push('dialog: ' + d.message()); d.dismiss(); });
  page.on('pageerror', e => notes.push('error: ' + e.message));
  await page.goto(process.argv[2]);
  await page.locator('#login').waitFor({ state: 'visible', timeout: 20000 });
  const before = await page.locator('li.report').count();
  await page.fill('#login input[name="token"]', 'TOKEN');
  await page.click('#login button[type="submit"]');
  await page.locator('form[data-report="sales_by_region"]').waitFor({ timeout: 20000 });
  const listed = await page.locator('li.report').evaluateAll(ls => ls.map(l => l.dataset.report));
  const form = 'form[data-report="sales_by_region"] ';
  await page.fill(form + 'input[name="start_date"]', '2023-01-01');
  await page.fill(form + 'input[name="end_date"]', '2025-12-31');
  await page.selectOption(form + 'select[name="_format"]', 'csv');
  await page.click('form[data-report="sales_by_region"] button[type="submit"]');
  const row = page.locator('#runs tbody tr').first();
  await row.locator('.status', { hasText: 'succeeded' }).waitFor({ timeout: 30000 })
    .catch(async e => { throw new Error(e.message + ' notes: ' + notes.join(' | ') + ' rows: ' + await page.locator('#runs').innerHTML()); });
  const href = await row.locator('a.download').getAttribute('href');
  const csv = await page.evaluate(async h => (await fetch(h)).text(), href);
  // A reload keeps the token for the tab: no second prompt, the run is still listed.
  await page.reload();
  await page.locator('#runs tbody tr').first().waitFor({ timeout: 20000 });
  const prompted = await page.locator('#login').isVisible();
  console.log(JSON.stringify({ before, listed, href, rows: csv.trim().split('\n').length, prompted,
    leaked: urls.filter(u => u.includes('TOKEN')) }));
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
"#
    .replace("LAUNCH", CHROMIUM)
    .replace("TOKEN", &t[0]);
    let Some(seen) = playwright(&script, &s.url("/")) else { return };
    assert_eq!(seen["before"], 0, "nothing is shown before the token: {seen}");
    let listed: Vec<&str> = seen["listed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(listed.contains(&"sales_by_region") && !listed.contains(&"finance_only"), "{seen}");
    assert!(seen["href"].as_str().unwrap().contains("/output?token="), "the download is a signed link: {seen}");
    assert!(seen["rows"].as_u64().unwrap() > 1, "{seen}");
    assert_eq!(seen["prompted"], false, "{seen}");
    assert_eq!(seen["leaked"], json!([]), "the token went into a URL: {seen}");
}

#[test]
fn only_an_admin_sees_the_sql_text_of_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let _ = keys(dir.path());
    let (toml, t) = api_tokens(&[("alice", &[], 1), ("root", &["admin"], 0)]);
    let mut s = server(dir.path(), &toml, "");
    let (status, _, body) = get_as(&s, Some(&t[0]), "/reports/broken.csv");
    assert!(status >= 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    // The spec key and the database's word, but not the SQL: not the fragment of the
    // spec, nor the statement.
    assert!(message.contains("`source.where`: no such column: no_such_column"), "{message}");
    assert!(!message.contains("no_such_column = 1") && !message.contains("SELECT"), "{message}");
    let (_, _, body) = get_as(&s, Some(&t[1]), "/reports/broken.csv");
    let m = body["error"]["message"].as_str().unwrap();
    assert!(m.contains("\n  | no_such_column = 1\n  | ^^^^^^^^^^^^^^"), "{body}");
    // The same for a run in the registry: alice's run, as alice and as the admin.
    s.token = Some(t[0].clone());
    let (_, _, run) = s.post("/runs", r#"{"report": "broken", "format": "csv"}"#);
    let id = run["id"].as_str().map(String::from);
    let id = id.unwrap_or_else(|| {
        let (_, l) = s.json("/runs");
        l["runs"][0]["id"].as_str().unwrap().to_string()
    });
    let failed = s.finished(&id);
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("no such column") && !error.contains("no_such_column = 1"), "{error}");
    let (_, _, as_admin) = get_as(&s, Some(&t[1]), &format!("/runs/{id}"));
    let e = as_admin["error"].as_str().unwrap();
    assert!(e.contains("| no_such_column = 1"), "{as_admin}");
}

/// An identity provider's JWKS endpoint over real HTTP: serves `jwks` as it is at each
/// request, and counts the requests.
fn jwks_endpoint(
    jwks: std::sync::Arc<std::sync::Mutex<String>>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = jwks.lock().unwrap().clone();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, hits)
}

#[test]
fn keys_from_a_jwks_url_are_fetched_again_for_an_unknown_kid_at_most_every_10_s() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let k = keys(dir.path());
    let first = std::fs::read_to_string(dir.path().join("jwks.json")).unwrap();
    let jwks = std::sync::Arc::new(std::sync::Mutex::new(first.clone()));
    let (url, hits) = jwks_endpoint(jwks.clone());
    let demo = demo(50);
    let config = format!(
        "reports = \"{}\"\n[auth]\n[auth.jwt]\njwks_url = \"{url}\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n",
        demo.join("reports").display()
    );
    let file = write(dir.path(), "ream.toml", &config);
    let s = Server::start_args(&["--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(hits.load(SeqCst), 1, "fetched at startup");
    let ok = claims("alice", &[], json!({}));
    assert_eq!(get_as(&s, Some(&rs(&k, &ok)), "/runs").0, 200);
    assert_eq!(hits.load(SeqCst), 1, "a known kid needs no fetch");
    // The provider rotates: the rogue key is published as `rsa2`.
    let rotated: Json = serde_json::from_str(&first).unwrap();
    let rogue_dir = tempfile::tempdir().unwrap();
    std::fs::write(rogue_dir.path().join("rsa.pem"), &k.rogue).unwrap();
    let modulus = String::from_utf8(openssl(&[
        "rsa",
        "-in",
        rogue_dir.path().join("rsa.pem").to_str().unwrap(),
        "-noout",
        "-modulus",
    ]))
    .unwrap();
    let hex = modulus.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let mut keys_now = rotated["keys"].as_array().unwrap().clone();
    keys_now.push(json!({ "kty": "RSA", "kid": "rsa2", "alg": "RS256", "n": b64(&n), "e": "AQAB" }));
    *jwks.lock().unwrap() = json!({ "keys": keys_now }).to_string();
    std::thread::sleep(Duration::from_millis(10_100));
    let new_key = sign(Algorithm::RS256, Some("rsa2"), &EncodingKey::from_rsa_pem(&k.rogue).unwrap(), &ok);
    assert_eq!(get_as(&s, Some(&new_key), "/runs").0, 200, "the rotated key is fetched and accepted");
    assert_eq!(hits.load(SeqCst), 2);
    // A flood of made-up kids fetches no more than once per 10 s.
    let rsa = EncodingKey::from_rsa_pem(&k.rsa).unwrap();
    for i in 0..20 {
        let (status, _, body) =
            get_as(&s, Some(&sign(Algorithm::RS256, Some(&format!("made-up-{i}")), &rsa, &ok)), "/runs");
        assert_eq!(status, 401, "{body}");
    }
    assert!(hits.load(SeqCst) <= 3, "{} fetches", hits.load(SeqCst));
}

#[test]
fn a_run_whose_backend_is_killed_resumes_with_its_tenant_still_set() {
    use std::io::{BufReader, Read};
    let Some(db) = PgDb::create("rls_resume") else { return };
    let reader = db.tenant_invoices(200_000);
    let dir = tempfile::tempdir().unwrap();
    let spec = tenant_spec(dir.path(), &reader, true);
    let mut child = ream()
        .args(["run", spec.to_str().unwrap(), "--claim", "tenant=2", "--batch-size", "100", "--strategy", "keyset"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    // A slow reader, so the run lasts long enough to lose its connection twice.
    let reading = slow_reader(BufReader::new(out), String::new());
    let mut killed = vec![];
    let kills = kill_times(2, || db.kill_new_ream_sessions(&mut killed));
    let text = reading.join().unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(kills, 2, "the run ended before it was killed twice");
    assert_eq!(err.matches("resumed (attempt").count(), 2, "{err}");
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 200_000, "every row of the tenant, once");
    assert!(rows.iter().all(|r| r.split(',').nth(1) == Some("2")), "a foreign row after a resume");
    let ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.split(',').next().unwrap()).collect();
    assert_eq!(ids.len(), 200_000, "a row came twice");
}

#[test]
fn close_metrics_puts_metrics_behind_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let _ = keys(dir.path());
    let (toml, t) = api_tokens(&[("prom", &[], 0)]);
    let s = server(dir.path(), &toml, "close_metrics = true");
    assert_eq!(s.get("/metrics").0, 401);
    assert_eq!(get_as(&s, Some(&t[0]), "/metrics").0, 200);
    assert_eq!(s.get("/healthz").0, 200, "health stays open");
}

#[test]
fn csv_cells_that_look_like_formulas_are_neutralised_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cells.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE cells (id INTEGER PRIMARY KEY, note TEXT, amount INTEGER);
         INSERT INTO cells VALUES (1, '=HYPERLINK(\"http://x\",\"y\")', -5), (2, '+1', 3), (3, '-2', -1),
           (4, '@SUM(A1)', 0), (5, char(9) || 'tab', 1), (6, char(13) || 'cr', 2), (7, 'plain = text', 4), (8, NULL, 5);",
    )
    .unwrap();
    drop(conn);
    let source = format!("sqlite:{}", db.display());
    let read = |extra: &[&str]| -> Vec<(String, String)> {
        let out = run_table(&source, "cells", extra);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let mut r = csv::Reader::from_reader(out.stdout.as_slice());
        r.records().map(|r| r.unwrap()).map(|r| (r[1].to_string(), r[2].to_string())).collect()
    };
    let plain = read(&[]);
    assert_eq!(plain[1].0, "+1", "untouched without the flag");
    let safe = read(&["--csv-neutralize-formulas"]);
    let notes: Vec<&str> = safe.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        notes,
        ["'=HYPERLINK(\"http://x\",\"y\")", "'+1", "'-2", "'@SUM(A1)", "'\ttab", "'\rcr", "plain = text", ""]
    );
    let amounts: Vec<&str> = safe.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(amounts, ["-5", "3", "-1", "0", "1", "2", "4", "5"], "numbers are not formulas");
    // The spec's option does the same.
    let spec = write(
        dir.path(),
        "cells.yaml",
        &format!("report: cells\nsource:\n  url: \"{source}\"\n  table: cells\ncsv: {{ neutralize_formulas: true }}\n"),
    );
    let out = ream().args(["run", spec.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut r = csv::Reader::from_reader(out.stdout.as_slice());
    let first: Vec<String> = r.records().map(|r| r.unwrap()[1].to_string()).collect();
    assert_eq!(first[0], "'=HYPERLINK(\"http://x\",\"y\")");
}

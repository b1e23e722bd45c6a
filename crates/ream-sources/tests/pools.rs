//! A database that never answers holds up only its own runs: PostgreSQL's pools are kept
//! in one map, and connecting to a new server used to happen under its lock.

#[allow(dead_code)]
#[path = "../../ream-cli/tests/common/pg.rs"]
mod pg;

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use ream_core::CancelToken;
use ream_sources::{open, ReadRequest};

#[test]
fn a_server_that_never_answers_does_not_hold_up_another_databases_runs() {
    let Some(db) = pg::PgDb::create("pools") else { return };
    db.exec("CREATE TABLE t (id int8 PRIMARY KEY); INSERT INTO t VALUES (1), (2);");
    // A "server" that accepts the connection and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("postgres://ream@{}/none", silent.local_addr().unwrap());
    let (accepted_tx, accepted) = mpsc::channel();
    let holder = std::thread::spawn(move || {
        let (socket, _) = silent.accept().unwrap();
        accepted_tx.send(()).unwrap();
        // Hold it open until the test is done with the other database.
        std::thread::sleep(Duration::from_secs(600));
        drop(socket);
    });
    let (stuck_tx, stuck) = mpsc::channel();
    std::thread::spawn(move || {
        let r = open(&silent_url, &ReadRequest::table("t"), CancelToken::new()).map(|_| ());
        let _ = stuck_tx.send(r.map_err(|e| e.to_string()));
    });
    accepted.recv_timeout(Duration::from_secs(30)).expect("the silent server was never reached");
    // The first run on the silent server now waits inside its connect. A run on the real
    // database opens and reads all the same.
    let url = db.url.clone();
    let (read_tx, read) = mpsc::channel();
    std::thread::spawn(move || {
        let mut src = open(&url, &ReadRequest::table("t"), CancelToken::new()).unwrap();
        let mut rows = 0;
        src.stream(&mut |b, _| {
            rows += b.num_rows();
            true
        })
        .unwrap();
        let _ = read_tx.send(rows);
    });
    // A guard against the old deadlock, not a timing check: two minutes is far beyond
    // any healthy open of a local database.
    let rows = read.recv_timeout(Duration::from_secs(120)).expect("the real database waited for the silent one");
    assert_eq!(rows, 2);
    assert!(stuck.try_recv().is_err(), "the silent server's open ended: the test proves nothing");
    drop(holder);
}

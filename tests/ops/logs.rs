//! Logs written to a file (stderr not a terminal) carry no ANSI escapes.

use crate::support::external::ExternalProxy;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_file_has_no_escape_codes() {
    let p = ExternalProxy::start(|t| t).await;
    // a refused login (warning level) and a reload (info) add lines
    let bad = mysql_async::Conn::new(p.opts("app", "wrong")).await;
    assert!(bad.is_err(), "a wrong password is refused");
    p.reload();
    let start = Instant::now();
    while !p.log().contains("SIGHUP") {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no reload line in 15 s:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = p.log();
    assert!(log.contains("causeway listening"), "{log}");
    assert!(log.lines().count() >= 3, "several lines to judge:\n{log}");
    assert!(
        !log.contains('\x1b'),
        "escape codes in a log file:\n{log:?}"
    );
    assert!(log.contains(" INFO "), "plain level names: {log}");
    p.assert_no_panic();
}

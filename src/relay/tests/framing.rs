//! The classic framing for a client without CLIENT_DEPRECATE_EOF over a
//! link that has it: the bytes the client receives are those a server
//! would have sent it.
use super::*;

/// Relays the reply to `expect` for a client without DEPRECATE_EOF.
async fn run_classic(h: &mut Harness, expect: Expect) -> Outcome {
    let caps = h.backend.caps - CapabilityFlags::CLIENT_DEPRECATE_EOF;
    let mut hook = |_: &mut OkPacket, _| false;
    let fut = relay(&mut h.backend, &mut h.client, caps, expect, None, &mut hook);
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("the relay finishes")
        .unwrap()
}

async fn classic(link_reply: &[u8], expect: Expect) -> (Vec<u8>, Outcome) {
    let mut h = harness(true);
    h.server.write_all(link_reply).await.unwrap();
    let out = run_classic(&mut h, expect).await;
    assert!(h.backend.reusable(), "the reply was read to its end");
    (received(&mut h).await, out)
}

#[tokio::test]
async fn rows_get_an_eof_after_the_columns_and_an_eof_terminator() {
    let gtids = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5";
    let link = packets(&[
        &[2],
        &coldef("a"),
        &coldef("b"),
        b"\x011\x01x",
        b"\x012\xfb",
        &ok(AUTOCOMMIT | 0x0020, gtids_state_entry(gtids), 0xFE),
    ]);
    let (got, out) = classic(&link, Expect::Query).await;
    let want = packets(&[
        &[2],
        &coldef("a"),
        &coldef("b"),
        &eof(0, AUTOCOMMIT | 0x0020),
        b"\x011\x01x",
        b"\x012\xfb",
        &eof(0, AUTOCOMMIT | 0x0020),
    ]);
    assert_eq!(got, want);
    assert_eq!(
        out.gtids.as_deref(),
        Some(gtids),
        "the session sees the set"
    );
}

#[tokio::test]
async fn an_empty_result_and_a_second_result_keep_counting() {
    let link = packets(&[
        &[1],
        &coldef("a"),
        &ok(AUTOCOMMIT | MORE, Vec::new(), 0xFE),
        &[1],
        &coldef("b"),
        b"\x017",
        &ok(AUTOCOMMIT, Vec::new(), 0xFE),
    ]);
    let (got, _) = classic(&link, Expect::Query).await;
    let want = packets(&[
        &[1],
        &coldef("a"),
        &eof(0, AUTOCOMMIT | MORE),
        &eof(0, AUTOCOMMIT | MORE),
        &[1],
        &coldef("b"),
        &eof(0, AUTOCOMMIT),
        b"\x017",
        &eof(0, AUTOCOMMIT),
    ]);
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_cursor_ends_with_one_eof_after_the_columns() {
    let link = packets(&[
        &[1],
        &coldef("a"),
        &ok(AUTOCOMMIT | CURSOR, Vec::new(), 0xFE),
    ]);
    let (got, out) = classic(&link, Expect::Execute).await;
    assert_eq!(
        got,
        packets(&[&[1], &coldef("a"), &eof(0, AUTOCOMMIT | CURSOR)])
    );
    assert!(out.status & CURSOR != 0);
}

#[tokio::test]
async fn an_error_after_rows_follows_the_owed_eof() {
    let link = packets(&[&[1], &coldef("a"), b"\x011", &err_packet()]);
    let (got, out) = classic(&link, Expect::Query).await;
    let want = packets(&[
        &[1],
        &coldef("a"),
        &eof(0, AUTOCOMMIT),
        b"\x011",
        &err_packet(),
    ]);
    assert_eq!(got, want);
    assert_eq!(out.error.map(|e| e.code), Some(1146));
}

#[tokio::test]
async fn a_prepare_reply_gets_eofs_after_parameters_and_columns() {
    // statement 9, 1 column, 2 parameters
    let prep = [0, 9, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0];
    let link = packets(&[&prep, &coldef("?"), &coldef("?"), &coldef("a")]);
    let (got, _) = classic(&link, Expect::Prepare).await;
    let want = packets(&[
        &prep,
        &coldef("?"),
        &coldef("?"),
        &eof(0, AUTOCOMMIT),
        &coldef("a"),
        &eof(0, AUTOCOMMIT),
    ]);
    assert_eq!(got, want);
}

#[tokio::test]
async fn an_err_reply_leaves_the_links_status_as_it_was() {
    let mut h = harness(true);
    h.server
        .write_all(&packets(&[&err_packet()]))
        .await
        .unwrap();
    run_classic(&mut h, Expect::Query).await;
    assert_eq!(h.backend.status, AUTOCOMMIT, "an ERR has no status flags");
    // so a prepare reply's EOFs still say autocommit
    h.backend.begin_reply();
    let prep = [0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    h.server
        .write_all(&packets(&[&prep, &coldef("a")]))
        .await
        .unwrap();
    received(&mut h).await;
    run_classic(&mut h, Expect::Prepare).await;
    let got = received(&mut h).await;
    assert!(got.ends_with(&[5, 0, 0, 3, 0xFE, 0, 0, 2, 0]), "{got:02x?}");
}

//! Tests of the proxy's own commands and leading-comment options.

use causeway_classify::{causeway_command, leading_comment_options, CausewayCommand, GetItem};

fn item(name: &str, column: &str) -> GetItem {
    GetItem {
        name: name.into(),
        column: column.into(),
    }
}

fn set(pairs: &[(&str, &str)]) -> Option<CausewayCommand> {
    Some(CausewayCommand::Set(
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    ))
}

#[test]
fn get() {
    assert_eq!(
        causeway_command("SELECT @@causeway.last_route"),
        Some(CausewayCommand::Get(vec![item(
            "last_route",
            "@@causeway.last_route"
        )]))
    );
    assert_eq!(
        causeway_command("select @@causeway.Token AS t, @@session.causeway.last_route `r`;"),
        Some(CausewayCommand::Get(vec![
            item("token", "t"),
            item("last_route", "r")
        ]))
    );
    assert_eq!(
        causeway_command("/* hi */ SELECT @@causeway.a AS 'col a'"),
        Some(CausewayCommand::Get(vec![item("a", "col a")]))
    );
    for sql in [
        "SELECT @@causeway.x, 1",
        "SELECT @@version",
        "SELECT @@global.causeway.x",
        "SELECT @@causeway.x FROM t",
        "SELECT @@causeway.x; SELECT 1",
        "SELECT @@causeway",
    ] {
        assert_eq!(causeway_command(sql), None, "{sql}");
    }
}

#[test]
fn set_commands() {
    assert_eq!(
        causeway_command("SET @@causeway.token = 'abc:1-5,def:7'"),
        set(&[("token", "abc:1-5,def:7")])
    );
    assert_eq!(
        causeway_command("SET @@session.causeway.x = 5"),
        set(&[("x", "5")])
    );
    assert_eq!(
        causeway_command("SET SESSION causeway.consistency='causal'"),
        set(&[("consistency", "causal")])
    );
    assert_eq!(
        causeway_command("set causeway.x = 1, causeway.Y := \"it''s\", @@causeway.z = -3"),
        set(&[("x", "1"), ("y", "it''s"), ("z", "-3")])
    );
    assert_eq!(
        causeway_command("SET causeway.mode = strict"),
        set(&[("mode", "strict")])
    );
    for sql in [
        "SET causeway.x = 1, autocommit = 0",
        "SET GLOBAL causeway.x = 1",
        "SET @x = 1",
        "SET causeway.x = 1 + 1",
        "SET causeway.x",
    ] {
        assert_eq!(causeway_command(sql), None, "{sql}");
    }
}

#[test]
fn show_backends() {
    assert_eq!(
        causeway_command("SHOW CAUSEWAY BACKENDS"),
        Some(CausewayCommand::ShowBackends)
    );
    assert_eq!(
        causeway_command("show causeway backends;"),
        Some(CausewayCommand::ShowBackends)
    );
    assert_eq!(causeway_command("SHOW CAUSEWAY"), None);
    assert_eq!(
        causeway_command("SHOW CAUSEWAY CACHE"),
        Some(CausewayCommand::ShowCache)
    );
    // comments of every kind are skipped by the lexer, case and a trailing
    // `;` do not matter
    for sql in [
        " /* x */ show  causeway\ncache ; ",
        "-- c\nSHOW CAUSEWAY CACHE",
        "# c\nSHOW /* a */ CAUSEWAY CACHE",
    ] {
        assert_eq!(
            causeway_command(sql),
            Some(CausewayCommand::ShowCache),
            "{sql}"
        );
    }
    assert_eq!(causeway_command("SHOW CAUSEWAY CACHE x"), None);
    assert_eq!(causeway_command("/* SHOW CAUSEWAY CACHE"), None);
    assert_eq!(causeway_command("SHOW TABLES"), None);
    assert_eq!(causeway_command(""), None);
}

#[test]
fn comment_options() {
    let gtid = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5,4E11FA47-71CA-11E1-9E33-C80AA9429562:1-9";
    let sql = format!("/* causeway token={gtid} consistency=causal */ SELECT 1");
    assert_eq!(
        leading_comment_options(&sql),
        Some(vec![
            ("token".to_string(), gtid.to_string()),
            ("consistency".to_string(), "causal".to_string())
        ])
    );
    assert_eq!(
        leading_comment_options("  /*causeway\n  flag */SELECT 1"),
        Some(vec![("flag".to_string(), String::new())])
    );
    assert_eq!(
        leading_comment_options("/* causeway */ SELECT 1"),
        Some(vec![])
    );
    assert_eq!(leading_comment_options("/* other */ SELECT 1"), None);
    assert_eq!(
        leading_comment_options("/* causewayx a=b */ SELECT 1"),
        None
    );
    assert_eq!(leading_comment_options("SELECT /* causeway a=b */ 1"), None);
    assert_eq!(
        leading_comment_options("/*! causeway a=b */ SELECT 1"),
        None
    );
    assert_eq!(leading_comment_options("/* causeway a=b"), None);
    assert_eq!(leading_comment_options(""), None);
}

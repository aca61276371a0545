//! Session-effect tests: what each session-affecting statement reports.

use causeway_classify::{classify, Autocommit, BeginTx, Effects, Route};

fn fx(sql: &str) -> Effects {
    classify(sql).effects
}

#[test]
fn reads_have_no_effects() {
    for sql in [
        "SELECT 1",
        "SHOW TABLES",
        "SELECT 1; SELECT 2",
        "DESCRIBE t",
    ] {
        assert!(fx(sql).is_empty(), "{sql}");
    }
}

#[test]
fn transactions() {
    let rw = Some(BeginTx::default());
    let ro = Some(BeginTx {
        read_only: true,
        ..BeginTx::default()
    });
    assert_eq!(fx("BEGIN").begin, rw);
    assert!(fx("BEGIN").implicit_commit);
    assert_eq!(fx("START TRANSACTION").begin, rw);
    assert_eq!(fx("START TRANSACTION READ ONLY").begin, ro);
    assert_eq!(fx("start transaction read write").begin, rw);
    assert_eq!(
        fx("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").begin,
        Some(BeginTx {
            read_only: true,
            consistent_snapshot: true,
            chained: false
        })
    );
    assert!(fx("COMMIT").commit);
    assert!(fx("ROLLBACK WORK").rollback);
    let to = fx("ROLLBACK TO SAVEPOINT a");
    assert!(!to.rollback && to.savepoint);
    assert!(fx("SAVEPOINT a").savepoint);
    let chain = fx("COMMIT AND CHAIN");
    assert!(chain.commit && chain.begin.is_some_and(|b| b.chained));
    assert!(fx("COMMIT AND NO CHAIN").begin.is_none());
    assert!(fx("ROLLBACK RELEASE").disconnect);
    assert!(!fx("COMMIT NO RELEASE").disconnect);
}

#[test]
fn set_statements() {
    assert_eq!(fx("SET autocommit=0").set_autocommit, Some(Autocommit::Off));
    assert_eq!(
        fx("SET autocommit = 1").set_autocommit,
        Some(Autocommit::On)
    );
    assert!(fx("SET autocommit = 1").implicit_commit);
    assert!(!fx("SET autocommit = 0").implicit_commit);
    assert_eq!(
        fx("SET @@autocommit = ON").set_autocommit,
        Some(Autocommit::On)
    );
    assert_eq!(
        fx("SET SESSION autocommit = OFF").set_autocommit,
        Some(Autocommit::Off)
    );
    assert_eq!(
        fx("SET @@session.autocommit='off'").set_autocommit,
        Some(Autocommit::Off)
    );
    assert_eq!(
        fx("SET autocommit = @saved").set_autocommit,
        Some(Autocommit::Unknown)
    );
    assert_eq!(fx("SET GLOBAL autocommit = 0").set_autocommit, None);
    assert!(!fx("SET autocommit = 0").set_session);

    let s = fx("SET NAMES utf8mb4");
    assert!(s.set_session && !s.user_var_write);
    assert!(fx("SET CHARACTER SET utf8").set_session);
    assert!(fx("SET sql_mode = 'STRICT_ALL_TABLES', time_zone = '+00:00'").set_session);
    assert!(fx("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").set_session);
    assert!(!fx("SET GLOBAL TRANSACTION READ ONLY").set_session);
    // no scope: the next transaction only
    assert!(fx("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").next_transaction);
    assert!(fx("set transaction read only, isolation level read committed").next_transaction);
    assert!(!fx("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").next_transaction);
    assert!(!fx("SET GLOBAL TRANSACTION READ ONLY").next_transaction);
    assert!(!fx("SET @@transaction_isolation = 'READ-COMMITTED'").next_transaction);
    assert!(!fx("SET GLOBAL max_connections = 10, sort_buffer_size = 1").set_session);
    assert!(fx("SET GLOBAL max_connections = 10, SESSION sort_buffer_size = 1").set_session);
    assert!(fx("/*!40101 SET NAMES utf8 */").set_session);

    let u = fx("SET @x := 1");
    assert!(u.user_var_write && !u.set_session);
    assert!(fx("SET @x = 1, @y = (SELECT 2)").user_var_write);
    let mixed = fx("SET @a = 1, autocommit = 0, NAMES latin1");
    assert!(mixed.user_var_write && mixed.set_session);
    assert_eq!(mixed.set_autocommit, Some(Autocommit::Off));
    assert!(fx("SET @l = GET_LOCK('x', 1)").get_lock);
}

#[test]
fn other_effects() {
    assert_eq!(fx("USE mydb").use_db.as_deref(), Some("mydb"));
    assert_eq!(fx("use `my``db`").use_db.as_deref(), Some("my`db"));
    assert!(fx("SELECT a INTO @x FROM t").user_var_write);
    assert!(fx("SELECT @x := a FROM t").user_var_write);
    assert!(!fx("SELECT @x").user_var_write);
    assert!(fx("UPDATE t SET a = (@v := a + 1)").user_var_write);
    assert!(fx("CALL p(@out)").user_var_write);
    let tmp = fx("CREATE TEMPORARY TABLE t (a INT)");
    assert!(tmp.temp_table && !tmp.implicit_commit);
    assert!(fx("DROP TEMPORARY TABLE IF EXISTS t").temp_table);
    let ddl = fx("CREATE TABLE t (a INT)");
    assert!(!ddl.temp_table && ddl.implicit_commit);
    assert!(fx("GRANT ALL ON *.* TO u").implicit_commit);
    let lock = fx("LOCK TABLES t WRITE");
    assert!(lock.lock_tables && lock.implicit_commit);
    assert!(fx("UNLOCK TABLES").unlock_tables);
    assert!(fx("SELECT GET_LOCK('a', 1)").get_lock);
    assert!(fx("DO GET_LOCK('a', 1)").get_lock);
    assert!(!fx("SELECT RELEASE_LOCK('a')").get_lock);
    assert!(fx("PREPARE s FROM 'SELECT 1'").sql_prepare);
    assert!(fx("EXECUTE s").sql_prepare);
    assert!(fx("DEALLOCATE PREPARE s").sql_prepare);
    assert!(fx("DROP PREPARE s").sql_prepare);
    assert!(!fx("DROP PREPARE s").implicit_commit);
    assert!(fx("XA START 'x'").xa);
    assert!(fx("HANDLER t OPEN").handler);
    assert!(fx("SHOW WARNINGS").diagnostics);
    assert!(fx("GET DIAGNOSTICS @n = NUMBER").diagnostics);
    assert!(fx("FLUSH TABLES").implicit_commit);
}

#[test]
fn causeway_effects() {
    for sql in [
        "SELECT @@causeway.last_route",
        "SET @@causeway.token = 'x'",
        "SET SESSION causeway.consistency = 'causal'",
        "SET causeway.x = 1",
        "SET @@session.causeway.x = 1",
        "SHOW CAUSEWAY BACKENDS",
    ] {
        let c = classify(sql);
        assert!(c.effects.causeway_var, "{sql}");
        assert_eq!(c.route, Route::Primary, "{sql}");
        assert!(!c.effects.set_session, "{sql}");
    }
    assert!(!fx("SELECT @@version").causeway_var);
}

#[test]
fn multi_statement_effects_merge() {
    let c = classify("SET autocommit = 0; USE db1; SELECT 1; USE db2");
    assert_eq!(c.route, Route::Primary);
    assert_eq!(c.effects.set_autocommit, Some(Autocommit::Off));
    assert_eq!(c.effects.use_db.as_deref(), Some("db2"));
}

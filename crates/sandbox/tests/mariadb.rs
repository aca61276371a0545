//! The MariaDB sandbox against real MariaDB (Debian bookworm's 10.11 in its
//! own root): GTID replication with `MASTER_USE_GTID = slave_pos`, the
//! accounts, and the MySQL search refusing a MariaDB `mysqld`. Skipped only
//! when `CAUSEWAY_MARIADB=0`.

use std::time::Duration;

use causeway_sandbox::{Flavor, MysqlDist, Options, Topology};
use mysql_async::prelude::Queryable;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn skip() -> bool {
    if std::env::var("CAUSEWAY_MARIADB").as_deref() == Ok("0") {
        eprintln!("CAUSEWAY_MARIADB=0: skipping the MariaDB sandbox tests");
        return true;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_primary_replicates_to_gtid_replicas() -> Result {
    if skip() {
        return Ok(());
    }
    let topo = Topology::start(Options {
        flavor: Flavor::Mariadb,
        ..Options::default()
    })
    .await?;
    assert_eq!(topo.dist().flavor(), Flavor::Mariadb);
    let mut c = topo.primary().conn().await?;
    let version: Option<String> = c.query_first("SELECT VERSION()").await?;
    assert!(version.unwrap_or_default().contains("MariaDB"));
    c.query_drop("CREATE DATABASE t").await?;
    c.query_drop("CREATE TABLE t.x (id INT PRIMARY KEY)")
        .await?;
    c.query_drop("INSERT INTO t.x VALUES (1), (2), (3)").await?;
    let pos: Option<String> = c.query_first("SELECT @@gtid_binlog_pos").await?;
    let pos = pos.unwrap_or_default();
    assert_eq!(pos, "0-1-3", "primary's position after three transactions");
    c.disconnect().await?;
    topo.wait_replicated(Duration::from_secs(60)).await?;
    for r in topo.replicas() {
        let mut c = r.conn().await?;
        let row: Option<(i64, String, i64, i64, String)> = c
            .query_first(
                "SELECT (SELECT COUNT(*) FROM t.x), @@gtid_slave_pos, @@read_only, \
                 @@gtid_strict_mode, @@binlog_format",
            )
            .await?;
        let row = row.ok_or("no row")?;
        assert_eq!(
            row,
            (3, pos.clone(), 1, 1, "ROW".to_string()),
            "{}",
            r.name()
        );
        let using: Option<mysql_async::Row> = c.query_first("SHOW SLAVE STATUS").await?;
        let using = using.ok_or("no slave status")?;
        let use_gtid: Option<String> = using.get("Using_Gtid");
        assert_eq!(use_gtid.as_deref(), Some("Slave_Pos"));
        c.disconnect().await?;
        assert!(topo.replica_status(r).await?.running());
    }
    // The accounts: app and monitor log in with mysql_native_password.
    for (u, p) in [("app", "apppw"), ("monitor", "monitorpw")] {
        let mut c = mysql_async::Conn::new(topo.primary().opts_for(u, p)).await?;
        let plugin: Option<String> = c
            .exec_first(
                "SELECT plugin FROM mysql.user WHERE user = ? AND host = '%'",
                (u,),
            )
            .await?;
        assert_eq!(plugin.as_deref(), Some("mysql_native_password"), "{u}");
        c.disconnect().await?;
    }
    Ok(())
}

/// The MySQL search refuses a MariaDB server named by `$CAUSEWAY_MYSQLD`.
#[test]
fn mysql_search_refuses_mariadb() -> Result {
    if skip() {
        return Ok(());
    }
    let maria = MysqlDist::locate_flavor(Flavor::Mariadb)?;
    assert_eq!(maria.flavor(), Flavor::Mariadb);
    // A wrapper script on the host that runs the chroot's mariadbd.
    let dir = std::env::temp_dir().join(format!("cw-mdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let fake = dir.join("mysqld");
    let root = maria.root().map(|r| r.display().to_string());
    let body = match root {
        Some(r) => format!("#!/bin/sh\nexec chroot {r} /usr/sbin/mariadbd \"$@\"\n"),
        None => format!("#!/bin/sh\nexec {} \"$@\"\n", maria.mysqld_path().display()),
    };
    std::fs::write(&fake, body)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
    std::env::set_var("CAUSEWAY_MYSQLD", &fake);
    let r = MysqlDist::locate();
    std::env::remove_var("CAUSEWAY_MYSQLD");
    let _ = std::fs::remove_dir_all(&dir);
    let err = r.err().ok_or("a MariaDB mysqld was accepted as MySQL")?;
    let msg = err.to_string();
    assert!(msg.contains("is mariadb, not mysql"), "{msg}");
    Ok(())
}

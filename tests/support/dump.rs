//! Captures everything a client library reports about a reply (column
//! definitions, values, affected rows, insert id, warnings, info, errors) so a
//! reply through causeway can be compared with the same reply from MySQL.
#![allow(dead_code)]

use mysql_async::prelude::*;
use mysql_async::{Column, Conn, Params, Row, Value};

/// One column definition, every field a client sees.
#[derive(Debug, PartialEq, Clone)]
pub struct ColDump {
    pub schema: String,
    pub table: String,
    pub org_table: String,
    pub name: String,
    pub org_name: String,
    pub charset: u16,
    pub length: u32,
    pub ty: String,
    pub flags: u16,
    pub decimals: u8,
}

impl From<&Column> for ColDump {
    fn from(c: &Column) -> Self {
        ColDump {
            schema: c.schema_str().into_owned(),
            table: c.table_str().into_owned(),
            org_table: c.org_table_str().into_owned(),
            name: c.name_str().into_owned(),
            org_name: c.org_name_str().into_owned(),
            charset: c.character_set(),
            length: c.column_length(),
            ty: format!("{:?}", c.column_type()),
            flags: c.flags().bits(),
            decimals: c.decimals(),
        }
    }
}

/// One result of a reply.
#[derive(Debug, PartialEq, Clone)]
pub struct SetDump {
    pub columns: Vec<ColDump>,
    pub rows: Vec<Vec<Value>>,
    pub affected_rows: u64,
    pub last_insert_id: Option<u64>,
    pub warnings: u16,
    pub info: String,
}

/// A whole reply, or the server error it ended with.
pub type Reply = Result<Vec<SetDump>, (u16, String, String)>;

fn server_error(e: mysql_async::Error) -> (u16, String, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.state, s.message),
        other => panic!("not a server error: {other}"),
    }
}

async fn drain(
    mut r: mysql_async::QueryResult<'_, '_, impl mysql_async::prelude::Protocol>,
) -> Reply {
    let mut sets = Vec::new();
    loop {
        let columns: Vec<ColDump> = r.columns_ref().iter().map(ColDump::from).collect();
        let rows: Vec<Row> = r.collect().await.map_err(server_error)?;
        sets.push(SetDump {
            columns,
            rows: rows.into_iter().map(Row::unwrap).collect(),
            affected_rows: r.affected_rows(),
            last_insert_id: r.last_insert_id(),
            warnings: r.warnings(),
            info: r.info().into_owned(),
        });
        if r.is_empty() {
            break;
        }
    }
    Ok(sets)
}

/// Runs `sql` with the text protocol.
pub async fn text(conn: &mut Conn, sql: &str) -> Reply {
    match conn.query_iter(sql).await {
        Ok(r) => drain(r).await,
        Err(e) => Err(server_error(e)),
    }
}

/// Prepares and executes `sql` with the binary protocol.
pub async fn binary(conn: &mut Conn, sql: &str, params: impl Into<Params>) -> Reply {
    match conn.exec_iter(sql, params).await {
        Ok(r) => drain(r).await,
        Err(e) => Err(server_error(e)),
    }
}

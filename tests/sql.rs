//! SQL connectors against real databases: PostgreSQL and MariaDB on this machine's
//! standard ports, SQLite files in temporary dirs. Each test makes tables (and roles)
//! with unique names and drops them. Without a database a test is skipped with the
//! reason printed, except under `CI=true`, where it fails.

mod common;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};

use common::{
    all_items, connector_state, create_connector, eventually, get_item, log_entries, log_entry,
    TestServer,
};

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const MARIADB: &str = "mysql://root@127.0.0.1:3306/test";
/// Polls run every second in these tests; a change shows within a few.
const SOON: Duration = Duration::from_secs(15);

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos:08x}", std::process::id())
}

/// Connects to a test database, or explains why the test is skipped (and fails under
/// `CI=true`, where the databases must be there).
async fn database<C: Connection>(url: &str) -> Option<C> {
    match C::connect(url).await {
        Ok(conn) => Some(conn),
        Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and the test database {url} is unreachable: {error}")
        }
        Err(error) => {
            eprintln!("skipped: the test database {url} is unreachable: {error}");
            None
        }
    }
}

/// A new SQLite file in `dir`: its `sqlite://` URL and a connection that may write it.
async fn sqlite_file(dir: &tempfile::TempDir) -> (String, sqlx::SqliteConnection) {
    let url = format!("sqlite://{}", dir.path().join("source.db").display());
    let conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
        .await
        .expect("create the SQLite file");
    (url, conn)
}

/// A connection to the test database `url` and a table with a fresh name starting
/// with `prefix`, made by the SQL `ddl` gives for that name; None when skipped.
async fn source_table<C: Connection>(
    url: &str,
    prefix: &str,
    ddl: impl Fn(&str) -> String,
) -> Option<(C, String)>
where
    for<'c> &'c mut C: Executor<'c>,
{
    let mut conn = database::<C>(url).await?;
    let table = unique(prefix);
    run(&mut conn, &ddl(&table)).await;
    Some((conn, table))
}

async fn run<C: Connection>(conn: &mut C, sql: &str)
where
    for<'c> &'c mut C: Executor<'c>,
{
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A `sql` connector document polling every second.
fn sql_connector(name: &str, stream: &str, url: &str, query: &str, extra: Value) -> Value {
    let mut settings = json!({"connectionString": url, "query": query,
        "pollIntervalSeconds": 1, "timeZone": "Europe/Berlin"});
    if let (Some(settings), Value::Object(extra)) = (settings.as_object_mut(), extra) {
        settings.extend(extra);
    }
    json!({"name": name, "type": "sql", "stream": stream, "settings": settings})
}

/// Waits until `stream` holds items for which `ready` holds; returns them by id.
async fn items_when(
    server: &TestServer,
    stream: &str,
    ready: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let token = server.token();
    eventually(SOON, &format!("items of {stream}"), async || {
        let first = server
            .call(
                Method::GET,
                &format!("/api/streams/{stream}/items?limit=1"),
                Some(&token),
                None,
            )
            .await;
        let items = match first.status {
            StatusCode::NOT_FOUND => Vec::new(),
            _ => all_items(server, stream, &token).await,
        };
        ready(&items).then_some(items)
    })
    .await
}

fn ids(items: &[Value]) -> Vec<&str> {
    items.iter().filter_map(|i| i["id"].as_str()).collect()
}

/// Checks source changes reach the pool at the next poll: an update, an insert and a
/// delete, then that nothing else changed.
async fn follows_changes<C: Connection>(
    server: &TestServer,
    conn: &mut C,
    table: &str,
    stream: &str,
) where
    for<'c> &'c mut C: Executor<'c>,
{
    run(
        conn,
        &format!("insert into {table} (id, s) values (2, 'two'), (3, 'three')"),
    )
    .await;
    items_when(server, stream, |items| ids(items) == ["1", "2", "3"]).await;
    let before = get_item(server, stream, "1").await.expect("item 1");
    run(conn, &format!("update {table} set s = 'TWO' where id = 2")).await;
    run(
        conn,
        &format!("insert into {table} (id, s) values (4, 'four')"),
    )
    .await;
    run(conn, &format!("delete from {table} where id = 3")).await;
    let items = items_when(server, stream, |items| {
        ids(items) == ["1", "2", "4"] && items[1]["fields"]["s"] == "TWO"
    })
    .await;
    assert_eq!(items[2]["fields"]["s"], "four");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = get_item(server, stream, "1").await.expect("item 1");
    assert_eq!(
        before["version"], after["version"],
        "an unchanged row is not rewritten"
    );
}

#[tokio::test]
async fn postgres_types_reach_the_pool_and_changes_follow() {
    let Some((mut pg, table)) = source_table::<sqlx::PgConnection>(POSTGRES, "dp_types", |table| {
        format!(
        "create table {table} (id int primary key, b bool, i2 int2, i8 int8, f4 real, f8 float8,
         n numeric(10,2), big numeric(40,0), t text, vc varchar(10), ch char(3), u uuid, j json,
         jb jsonb, by bytea, d date, tm time, ts timestamp, tz timestamptz, arr text[], nul int, s text);
         insert into {table} values (1, true, 2, 9007199254740993, 1.5, 2.25, 12.50,
         1234567890123456789012345678901234567890, 'text', 'v', 'abc',
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"k\":1}}', '{{\"k\":[1,2]}}', '\\x00ff',
         '2026-01-02', '03:04:05', '2026-07-01 12:00:00', '2026-07-01 12:00:00+00', '{{a,b}}', null, 'one')")
    })
    .await
    else {
        return;
    };
    let server = TestServer::start().await;
    let stream = unique("pg").replace('_', "-");
    let doc = sql_connector(
        "pg types",
        &stream,
        POSTGRES,
        &format!("select * from {table} order by id"),
        json!({}),
    );
    let (id, _) = create_connector(&server, &doc).await;
    let items = items_when(&server, &stream, |items| !items.is_empty()).await;
    assert_eq!(
        Value::Object(items[0]["fields"].as_object().cloned().expect("fields")),
        json!({"id": 1, "b": true, "i2": 2, "i8": 9007199254740993_i64, "f4": 1.5, "f8": 2.25,
               "n": 12.5, "big": "1234567890123456789012345678901234567890", "t": "text",
               "vc": "v", "ch": "abc", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j.k": 1,
               "jb.k": [1, 2], "by": "AP8=", "d": "2026-01-02", "tm": "03:04:05",
               "ts": "2026-07-01T12:00:00+02:00", "tz": "2026-07-01T14:00:00+02:00",
               "arr": ["a", "b"], "nul": null, "s": "one"})
    );
    assert_eq!(connector_state(&server, &id).await, "active");
    let poll = log_entry(&server, &id, "poll", "items").await;
    assert!(poll["durationMs"].is_u64() && poll["items"] == 1, "{poll}");

    let tested = server
        .admin(
            Method::POST,
            &format!("/api/admin/connectors/{id}/test"),
            None,
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.body);
    let test = &tested.body["test"];
    assert_eq!(
        (test["ok"].clone(), test["rowCount"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(test["sample"][0]["fields"], items[0]["fields"]);
    let fields = test["fields"].as_array().expect("fields");
    assert!(
        fields.contains(&json!({"name": "big", "type": "string"})),
        "{fields:?}"
    );
    assert!(
        fields.contains(&json!({"name": "nul", "type": "null"})),
        "{fields:?}"
    );

    follows_changes(&server, &mut pg, &table, &stream).await;
    run(&mut pg, &format!("drop table {table}")).await;
}

#[tokio::test]
async fn mariadb_types_reach_the_pool_and_changes_follow() {
    let Some((mut my, table)) =
        source_table::<sqlx::MySqlConnection>(MARIADB, "dp_types", |table| {
            format!(
                "create table {table} (id int primary key, b tinyint(1), ti tinyint, si smallint,
         bi bigint, ub bigint unsigned, f float, dbl double, n decimal(10,2), big decimal(40,0),
         s varchar(20), tx text, bl blob, d date, tm time, dt datetime, ts timestamp null,
         j json, nul int, sb varchar(20) collate utf8mb4_bin, lb longtext collate utf8mb4_bin,
         flag bit(1), bits bit(8), vb varbinary(4))"
            )
        })
        .await
    else {
        return;
    };
    run(&mut my, &format!(
        "insert into {table} values (1, 1, -5, 300, 9007199254740993, 18446744073709551615,
         1.5, 2.25, 12.50, 1234567890123456789012345678901234567890, 'one', 'text', x'00ff',
         '2026-01-02', '03:04:05', '2026-07-01 12:00:00', '2026-07-01 12:00:00', '{{\"k\":1}}', null,
         'Zürich', 'plain text', b'1', b'101', x'00010203')"
    )).await;
    let server = TestServer::start().await;
    let stream = unique("my").replace('_', "-");
    // MariaDB's JSON is LONGTEXT with a binary collation, flagged binary on the wire.
    let query = format!("select *, cast(j as char) as jt from {table} order by id");
    let (_, _) = create_connector(
        &server,
        &sql_connector("my types", &stream, MARIADB, &query, json!({})),
    )
    .await;
    let items = items_when(&server, &stream, |items| !items.is_empty()).await;
    assert_eq!(
        Value::Object(items[0]["fields"].as_object().cloned().expect("fields")),
        json!({"id": 1, "b": true, "ti": -5, "si": 300, "bi": 9007199254740993_i64,
               "ub": u64::MAX, "f": 1.5, "dbl": 2.25, "n": 12.5,
               "big": "1234567890123456789012345678901234567890", "s": "one", "tx": "text",
               "bl": "AP8=", "d": "2026-01-02", "tm": "03:04:05",
               "dt": "2026-07-01T12:00:00+02:00", "ts": "2026-07-01T14:00:00+02:00",
               "j.k": 1, "jt": "{\"k\":1}", "nul": null, "sb": "Zürich", "lb": "plain text",
               "flag": true, "bits": 5, "vb": "AAECAw=="})
    );
    follows_changes(&server, &mut my, &table, &stream).await;
    run(&mut my, &format!("drop table {table}")).await;
}

#[tokio::test]
async fn sqlite_types_reach_the_pool_and_changes_follow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, mut lite) = sqlite_file(&dir).await;
    run(
        &mut lite,
        "create table t (id integer primary key, flag boolean, n integer, r real,
        s text, b blob, ts datetime, nul text);
        insert into t values (1, 1, 42, 1.5, 'one', x'00ff', '2026-07-01 12:00:00', null)",
    )
    .await;
    let server = TestServer::start().await;
    let stream = unique("lite").replace('_', "-");
    let doc = sql_connector(
        "lite types",
        &stream,
        &url,
        "select * from t order by id",
        json!({}),
    );
    let (id, _) = create_connector(&server, &doc).await;
    let items = items_when(&server, &stream, |items| !items.is_empty()).await;
    assert_eq!(
        Value::Object(items[0]["fields"].as_object().cloned().expect("fields")),
        json!({"id": 1, "flag": true, "n": 42, "r": 1.5, "s": "one", "b": "AP8=",
               "ts": "2026-07-01T12:00:00+02:00", "nul": null})
    );
    let printed = server.cli(&["connector", "test", &id], None);
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert!(
        stdout.contains("ok: 1 rows") && stdout.contains("flag") && stdout.contains("boolean"),
        "{stdout}"
    );
    follows_changes(&server, &mut lite, "t", &stream).await;
}

#[tokio::test]
async fn today_selects_the_rows_of_the_day_in_the_connector_zone() {
    let Some((mut pg, table)) = source_table::<sqlx::PgConnection>(POSTGRES, "dp_today", |table| {
        format!(
            "create table {table} (id int primary key, d date);
         insert into {table} values (1, (now() at time zone 'Pacific/Kiritimati')::date),
         (2, (now() at time zone 'Pacific/Kiritimati')::date - 1),
         (3, (now() at time zone 'Pacific/Kiritimati')::date + 1)"
        )
    })
    .await
    else {
        return;
    };
    let server = TestServer::start().await;
    let stream = unique("today").replace('_', "-");
    let query =
        format!("select id, d, @today as today from {table} where d = @today -- not @yesterday");
    let doc = sql_connector(
        "today",
        &stream,
        POSTGRES,
        &query,
        json!({"timeZone": "Pacific/Kiritimati"}),
    );
    create_connector(&server, &doc).await;
    let items = items_when(&server, &stream, |items| !items.is_empty()).await;
    assert_eq!(ids(&items), ["1"]);
    assert_eq!(items[0]["fields"]["d"], items[0]["fields"]["today"]);
    run(&mut pg, &format!("drop table {table}")).await;
}

#[tokio::test]
async fn failures_are_classified_logged_and_recovered_from() {
    let Some(mut pg) = database::<sqlx::PgConnection>(POSTGRES).await else {
        return;
    };
    let Some(mut my) = database::<sqlx::MySqlConnection>(MARIADB).await else {
        return;
    };
    let (table, role, user) = (unique("dp_secret"), unique("dp_reader"), unique("dp_user"));
    run(
        &mut pg,
        &format!("create table {table} (id int primary key); create role {role} login"),
    )
    .await;
    run(
        &mut my,
        &format!("create user '{user}'@'%' identified by 'right-password'"),
    )
    .await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let server = TestServer::start().await;
    let cases = [
        (
            "wrong password",
            format!("mysql://{user}:wrong-password@127.0.0.1:3306/test"),
            "select 1".to_owned(),
            json!({}),
            "authentication failed",
        ),
        (
            "unknown role",
            "postgres://no_such_role_dp@127.0.0.1:5432/test".to_owned(),
            "select 1".to_owned(),
            json!({}),
            "authentication failed",
        ),
        (
            "unreachable",
            format!("postgres://postgres@127.0.0.1:{closed_port}/test"),
            "select 1".to_owned(),
            json!({}),
            "cannot connect",
        ),
        (
            "too slow",
            POSTGRES.to_owned(),
            "select 1 as id from pg_sleep(5)".to_owned(),
            json!({"timeoutSeconds": 1}),
            "query timeout",
        ),
        (
            "too slow on MariaDB",
            MARIADB.to_owned(),
            "select 1 as id from (select sleep(5)) as s".to_owned(),
            json!({"timeoutSeconds": 1}),
            "query timeout",
        ),
        (
            "syntax",
            POSTGRES.to_owned(),
            "selec 1".to_owned(),
            json!({}),
            "syntax error",
        ),
        (
            "forbidden",
            format!("postgres://{role}@127.0.0.1:5432/test"),
            format!("select * from {table}"),
            json!({}),
            "permission denied",
        ),
        (
            "sql server unreachable",
            format!("server=tcp:127.0.0.1,{closed_port};user id=sa;password=wrong-password;TrustServerCertificate=true"),
            "select 1".to_owned(),
            json!({}),
            "cannot connect",
        ),
    ];
    let mut created = Vec::new();
    for (name, url, query, extra, _) in &cases {
        let stream = unique("fail").replace('_', "-");
        let (id, _) = create_connector(
            &server,
            &sql_connector(name, &stream, url, query, extra.clone()),
        )
        .await;
        created.push(id);
    }
    for ((name, _, _, _, expected), id) in cases.iter().zip(&created) {
        let entry = log_entry(&server, id, "error", expected).await;
        assert_eq!(entry["level"], "error", "{name}: {entry}");
        assert_eq!(connector_state(&server, id).await, "error", "{name}");
        assert!(
            !entry["message"]
                .as_str()
                .unwrap_or("")
                .contains("wrong-password"),
            "{entry}"
        );
    }
    let role_entry = log_entry(&server, &created[1], "error", "no_such_role_dp").await;
    assert!(
        role_entry["message"]
            .as_str()
            .unwrap_or("")
            .contains("does not exist"),
        "{role_entry}"
    );
    let tested = server
        .admin(
            Method::POST,
            &format!("/api/admin/connectors/{}/test", created[5]),
            None,
        )
        .await;
    let message = common::assert_error(&tested, StatusCode::BAD_GATEWAY, "SOURCE_ERROR");
    assert!(message.starts_with("syntax error"), "{message}");

    let health = server.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK, "the server keeps serving");

    let fix = json!({"settings": {"query": "select 1 as id"}});
    let patched = server
        .admin(
            Method::PATCH,
            &format!("/api/admin/connectors/{}", created[5]),
            Some(&fix),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    log_entry(&server, &created[5], "recovered", "polling works again").await;
    assert_eq!(connector_state(&server, &created[5]).await, "active");

    run(&mut pg, &format!("drop table {table}; drop role {role}")).await;
    run(&mut my, &format!("drop user '{user}'@'%'")).await;
}

#[tokio::test]
async fn a_disabled_connector_stops_polling_but_can_be_tested() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, mut lite) = sqlite_file(&dir).await;
    run(
        &mut lite,
        "create table t (id integer primary key, s text); insert into t values (1, 'one')",
    )
    .await;
    let server = TestServer::start().await;
    let doc = sql_connector(
        "paused",
        "paused",
        &url,
        "select * from t",
        json!({"mirror": false}),
    );
    let (id, _) = create_connector(&server, &doc).await;
    items_when(&server, "paused", |items| items.len() == 1).await;
    assert_eq!(
        server.connector_action(&id, "disable").await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    run(&mut lite, "insert into t values (2, 'two')").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ids(&all_items(&server, "paused", &server.token()).await),
        ["1"]
    );
    let tested = server
        .admin(
            Method::POST,
            &format!("/api/admin/connectors/{id}/test"),
            None,
        )
        .await;
    assert_eq!(tested.body["test"]["rowCount"], 2, "{}", tested.body);
    assert_eq!(
        server.connector_action(&id, "enable").await.status,
        StatusCode::OK
    );
    run(&mut lite, "delete from t where id = 1").await;
    let items = items_when(&server, "paused", |items| items.len() == 2).await;
    assert_eq!(
        ids(&items),
        ["1", "2"],
        "mirror: false keeps rows gone from the source"
    );
}

#[tokio::test]
async fn a_failing_poller_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, mut lite) = sqlite_file(&dir).await;
    let server = TestServer::start().await;
    let doc = sql_connector("late", "late", &url, "select * from t", json!({}));
    let (id, _) = create_connector(&server, &doc).await;
    let entry = log_entry(&server, &id, "error", "no such table").await;
    assert!(
        entry["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("query failed"),
        "{entry}"
    );
    assert_eq!(connector_state(&server, &id).await, "error");
    run(
        &mut lite,
        "create table t (id integer primary key); insert into t values (1)",
    )
    .await;
    log_entry(&server, &id, "recovered", "polling works again").await;
    assert_eq!(connector_state(&server, &id).await, "active");
    items_when(&server, "late", |items| ids(items) == ["1"]).await;
}

#[tokio::test]
async fn a_connection_string_moved_with_its_masked_password_keeps_the_password() {
    let Some(mut my) = database::<sqlx::MySqlConnection>(MARIADB).await else {
        return;
    };
    let user = unique("dp_mover");
    run(
        &mut my,
        &format!(
            "create user '{user}'@'%' identified by 'pa;ss@word';
             grant select on test.* to '{user}'@'%'"
        ),
    )
    .await;
    let server = TestServer::start().await;
    let unreachable = format!("mysql://{user}:pa%3Bss%40word@127.0.0.1:1/test");
    let doc = sql_connector("mover", "mover", &unreachable, "select 1 as id", json!({}));
    let (id, _) = create_connector(&server, &doc).await;
    log_entry(&server, &id, "error", "cannot connect").await;
    let read = server
        .admin(Method::GET, &format!("/api/admin/connectors/{id}"), None)
        .await;
    let shown = read.body["connector"]["settings"]["connectionString"]
        .as_str()
        .expect("a connection string")
        .to_owned();
    assert_eq!(shown, format!("mysql://{user}:***@127.0.0.1:1/test"));
    let moved = json!({"settings": {"connectionString": shown.replace(":1/", ":3306/")}});
    let patched = server
        .admin(
            Method::PATCH,
            &format!("/api/admin/connectors/{id}"),
            Some(&moved),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    log_entry(&server, &id, "recovered", "polling works again").await;
    items_when(&server, "mover", |items| ids(items) == ["1"]).await;
    run(&mut my, &format!("drop user '{user}'@'%'")).await;
}

#[tokio::test]
async fn mariadb_zero_dates_are_null_with_a_warning() {
    let Some((mut my, table)) =
        source_table::<sqlx::MySqlConnection>(MARIADB, "dp_zero", |table| {
            format!(
                "set session sql_mode = '';
                 create table {table} (id int primary key, d date, dt datetime, ok date);
                 insert into {table} values (1, '0000-00-00', '0000-00-00 00:00:00', '2026-01-02'),
                 (2, '2026-05-00', '2026-01-02 03:04:05', '2026-01-03')"
            )
        })
        .await
    else {
        return;
    };
    let server = TestServer::start().await;
    let stream = unique("zero").replace('_', "-");
    let query = format!("select * from {table} order by id");
    let (id, _) = create_connector(
        &server,
        &sql_connector("zero dates", &stream, MARIADB, &query, json!({})),
    )
    .await;
    let items = items_when(&server, &stream, |items| items.len() == 2).await;
    assert_eq!(
        Value::Object(items[0]["fields"].as_object().cloned().expect("fields")),
        json!({"id": 1, "d": null, "dt": null, "ok": "2026-01-02"})
    );
    assert_eq!(
        Value::Object(items[1]["fields"].as_object().cloned().expect("fields")),
        json!({"id": 2, "d": null, "dt": "2026-01-02T03:04:05+01:00", "ok": "2026-01-03"})
    );
    let warning = log_entry(&server, &id, "warning", "zero dates").await;
    assert_eq!(warning["level"], "warn", "{warning}");
    assert!(
        warning["message"].as_str().unwrap_or("").contains("\"d\""),
        "{warning}"
    );
    assert_eq!(connector_state(&server, &id).await, "active");
    run(&mut my, &format!("drop table {table}")).await;
}

/// A SQLite query that counts for minutes while reading the table `t`.
const ENDLESS_SQLITE: &str = "with recursive c(x) as (select 1 union all select x + 1 from c
    where x < 1000000000) select count(*) as id from c, t";

#[tokio::test]
async fn a_sqlite_query_past_its_timeout_stops_and_frees_the_file_for_writers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, mut lite) = sqlite_file(&dir).await;
    run(
        &mut lite,
        "pragma journal_mode = delete; create table t (id integer primary key);
         insert into t values (1)",
    )
    .await;
    let server = TestServer::start().await;
    let mut doc = sql_connector(
        "endless",
        "endless",
        &url,
        ENDLESS_SQLITE,
        json!({"timeoutSeconds": 1}),
    );
    doc["enabled"] = json!(false);
    let (id, _) = create_connector(&server, &doc).await;
    let tested = server
        .admin(
            Method::POST,
            &format!("/api/admin/connectors/{id}/test"),
            None,
        )
        .await;
    let message = common::assert_error(&tested, StatusCode::BAD_GATEWAY, "SOURCE_ERROR");
    assert!(message.starts_with("query timeout"), "{message}");
    // A writer waits up to its busy timeout (5 s) for readers; a query still running
    // would hold the file's read lock for minutes.
    sqlx::query("insert into t values (2)")
        .execute(&mut lite)
        .await
        .expect("the file is free for writers once the query timed out");
}

#[tokio::test]
async fn connector_test_in_the_cli_waits_for_the_servers_own_timeout() {
    let Some(_) = database::<sqlx::PgConnection>(POSTGRES).await else {
        return;
    };
    let server = TestServer::start().await;
    let mut doc = sql_connector(
        "sleepy",
        "sleepy",
        POSTGRES,
        "select 1 as id from pg_sleep(60)",
        json!({"timeoutSeconds": 31}),
    );
    doc["enabled"] = json!(false);
    let (id, _) = create_connector(&server, &doc).await;
    let printed = server.cli(&["connector", "test", &id], None);
    let stderr = String::from_utf8_lossy(&printed.stderr);
    assert!(!printed.status.success());
    assert!(
        stderr.contains("SOURCE_ERROR") && stderr.contains("query timeout"),
        "{stderr}"
    );
}

/// The times of the `error` entries in a connector's log, oldest first.
async fn failure_times(server: &TestServer, id: &str) -> Vec<jiff::Timestamp> {
    let mut times: Vec<jiff::Timestamp> = log_entries(server, id)
        .await
        .iter()
        .filter(|e| e["event"] == "error")
        .filter_map(|e| e["at"].as_str()?.parse().ok())
        .collect();
    times.sort();
    times
}

/// Forwards every connection to `listener` to `target` until the test ends: the
/// database coming back at the address a connector polls.
fn forward(listener: tokio::net::TcpListener, target: &'static str) {
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
}

#[tokio::test]
async fn an_unreachable_database_is_retried_ever_later_until_it_is_back() {
    let Some(_) = database::<sqlx::PgConnection>(POSTGRES).await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let server = TestServer::start().await;
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let doc = sql_connector("down", "down", &url, "select 1 as id", json!({}));
    let (id, _) = create_connector(&server, &doc).await;
    let times = eventually(
        Duration::from_secs(40),
        "four failed attempts",
        async || Some(failure_times(&server, &id).await).filter(|t| t.len() >= 4),
    )
    .await;
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|pair| pair[1].duration_since(pair[0]).as_secs_f64())
        .collect();
    assert!(gaps[2] > gaps[0], "the pauses grow: {gaps:?} s");
    assert_eq!(connector_state(&server, &id).await, "error");

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the connector's port is free again");
    forward(listener, "127.0.0.1:5432");
    eventually(Duration::from_secs(40), "recovery", async || {
        log_entries(&server, &id)
            .await
            .into_iter()
            .find(|e| e["event"] == "recovered")
    })
    .await;
    assert_eq!(connector_state(&server, &id).await, "active");
    items_when(&server, "down", |items| ids(items) == ["1"]).await;
}

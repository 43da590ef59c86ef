//! The two migration folders: the same migrations by name, and every
//! `down.sql` undoes its `up.sql` exactly, on its own backend.

use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::common::postgres_admin_url;

fn folder(backend: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend)
}

/// The migration names of one backend, in the order they run.
fn names(backend: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder(backend))
        .expect("the migrations folder")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sql(backend: &str, name: &str, file: &str) -> String {
    std::fs::read_to_string(folder(backend).join(name).join(file))
        .unwrap_or_else(|e| panic!("{backend}/{name}/{file}: {e}"))
}

#[test]
fn both_backends_have_the_same_migrations() {
    let sqlite = names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, names("postgres"));
    for name in &sqlite {
        for backend in ["sqlite", "postgres"] {
            for file in ["up.sql", "down.sql"] {
                assert!(
                    !sql(backend, name, file).trim().is_empty(),
                    "{backend}/{name}/{file} is empty"
                );
            }
        }
    }
}

#[derive(QueryableByName, PartialEq, Eq, Debug)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// Everything a migration can create, one line per object, sorted.
fn sqlite_schema(conn: &mut SqliteConnection) -> Vec<String> {
    diesel::sql_query(
        "SELECT type || ' ' || name || ': ' || coalesce(sql, '') AS line FROM sqlite_master \
         WHERE name NOT LIKE 'sqlite_%' AND name != '__diesel_schema_migrations' ORDER BY line",
    )
    .load::<Line>(conn)
    .unwrap()
    .into_iter()
    .map(|l| l.line)
    .collect()
}

fn postgres_schema(conn: &mut PgConnection) -> Vec<String> {
    // Other tests create and drop their own schemas meanwhile, so the rows of
    // this schema are chosen first (materialized) and only then described:
    // pg_get_expr and friends open the relation and fail on one just dropped.
    diesel::sql_query(
        "WITH rels AS MATERIALIZED ( \
           SELECT c.oid, c.relname, c.relkind FROM pg_class c \
            WHERE c.relnamespace = current_schema()::regnamespace \
              AND c.relname NOT LIKE '%__diesel_schema_migrations%' \
         ), cols AS MATERIALIZED ( \
           SELECT r.relname, a.attname, a.atttypid, a.atttypmod, a.attnotnull, d.adbin, d.adrelid \
             FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
            WHERE r.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped \
         ), cons AS MATERIALIZED ( \
           SELECT c.oid, c.conname FROM pg_constraint c JOIN rels r ON r.oid = c.conrelid \
         ) \
         SELECT line FROM ( \
           SELECT 'column ' || relname || '.' || attname || ' ' || format_type(atttypid, atttypmod) || \
                  CASE WHEN attnotnull THEN ' not null ' ELSE ' null ' END || \
                  coalesce(pg_get_expr(adbin, adrelid), '') AS line FROM cols \
           UNION ALL \
           SELECT 'index ' || relname || ': ' || pg_get_indexdef(oid) FROM rels WHERE relkind = 'i' \
           UNION ALL \
           SELECT 'constraint ' || conname || ': ' || pg_get_constraintdef(oid) FROM cons \
         ) objects ORDER BY line",
    )
    .load::<Line>(conn)
    .unwrap()
    .into_iter()
    .map(|l| l.line)
    .collect()
}

/// Runs every migration up, down and up again, checking that each down
/// leaves the schema exactly as it was before its up.
fn check_round_trips<C>(backend: &str, conn: &mut C, schema: fn(&mut C) -> Vec<String>)
where
    C: SimpleConnection,
{
    for name in names(backend) {
        let before = schema(conn);
        conn.batch_execute(&sql(backend, &name, "up.sql"))
            .unwrap_or_else(|e| panic!("{backend}/{name}/up.sql: {e}"));
        let after_up = schema(conn);
        assert_ne!(before, after_up, "{backend}/{name}/up.sql changes nothing");
        conn.batch_execute(&sql(backend, &name, "down.sql"))
            .unwrap_or_else(|e| panic!("{backend}/{name}/down.sql: {e}"));
        assert_eq!(
            schema(conn),
            before,
            "{backend}/{name}/down.sql does not undo its up.sql"
        );
        conn.batch_execute(&sql(backend, &name, "up.sql")).unwrap();
        assert_eq!(schema(conn), after_up, "{backend}/{name} is not repeatable");
    }
}

#[test]
fn every_sqlite_down_undoes_its_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("migrations.db");
    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    check_round_trips("sqlite", &mut conn, sqlite_schema);
}

#[test]
fn every_postgres_down_undoes_its_up() {
    let admin_url = postgres_admin_url();
    let mut admin = match PgConnection::establish(&admin_url) {
        Ok(conn) => conn,
        Err(e) => return crate::common::skip("PostgreSQL", &e.to_string()),
    };
    let schema_name = format!(
        "flagpole_migrations_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema_name}"))
        .unwrap();
    let mut conn = PgConnection::establish(&admin_url).unwrap();
    conn.batch_execute(&format!("SET search_path TO {schema_name}"))
        .unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_round_trips("postgres", &mut conn, postgres_schema)
    }));
    admin
        .batch_execute(&format!("DROP SCHEMA {schema_name} CASCADE"))
        .unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

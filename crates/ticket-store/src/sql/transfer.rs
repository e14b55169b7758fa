//! [`Transfer`] for [`SqlStore`]: the export reads one REPEATABLE READ snapshot, the import
//! writes in one transaction (see [`crate::transfer`] for the format).

use std::io::{BufRead, Write};

use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Row};

use super::db::{During, Failure};
use super::engine::Engine;
use super::exec::bind;
use super::{migrate, SqlStore};
use crate::transfer::{Counts, ExportWriter, ImportReader, Transfer, TransferError, TABLES};

impl SqlStore {
    fn transfer_error(&self, failure: Failure) -> TransferError {
        TransferError::Store(self.db.final_error(failure))
    }
}

/// Statements that move each identity sequence past the ids an import wrote (PostgreSQL does
/// not do it by itself for explicit values; MySQL's AUTO_INCREMENT does), and the event
/// counter past the events imported (on every engine).
fn after_import(engine: Engine) -> &'static [&'static str] {
    match engine {
        Engine::Postgres => &[
            crate::transfer::AFTER_IMPORT_EVENTS,
            "SELECT setval(pg_get_serial_sequence('audit_log', 'seq'), \
             COALESCE((SELECT MAX(seq) FROM audit_log), 0) + 1, false)",
            "SELECT setval(pg_get_serial_sequence('anomalies', 'id'), \
             COALESCE((SELECT MAX(id) FROM anomalies), 0) + 1, false)",
            "SELECT setval(pg_get_serial_sequence('voucher_uses', 'id'), \
             COALESCE((SELECT MAX(id) FROM voucher_uses), 0) + 1, false)",
        ],
        Engine::MySql => &[crate::transfer::AFTER_IMPORT_EVENTS],
    }
}

#[async_trait]
impl Transfer for SqlStore {
    async fn export(&self, out: &mut (dyn Write + Send)) -> Result<Counts, TransferError> {
        let source = match self.db.engine {
            Engine::Postgres => "postgres",
            Engine::MySql => "mysql",
        };
        let mut conn = self
            .db
            .pool
            .acquire()
            .await
            .during("taking a connection")
            .map_err(|f| self.transfer_error(f))?;
        let mut tx = self
            .db
            .engine
            .begin_snapshot(&mut conn)
            .await
            .during("starting the export's snapshot")
            .map_err(|f| self.transfer_error(f))?;
        let mut writer = ExportWriter::start(out, source, migrate::latest_version(self.db.engine))?;
        for table in TABLES {
            let mut rows = sqlx::query(AssertSqlSafe(table.select())).fetch(&mut *tx);
            while let Some(row) = rows
                .try_next()
                .await
                .during("reading rows to export")
                .map_err(|f| self.transfer_error(f))?
            {
                let value = table
                    .to_json(&row)
                    .during("reading rows to export")
                    .map_err(|f| self.transfer_error(f))?;
                writer.row(table, value)?;
            }
        }
        tx.commit()
            .await
            .during("ending the export's snapshot")
            .map_err(|f| self.transfer_error(f))?;
        writer.finish()
    }

    async fn import(&self, input: &mut (dyn BufRead + Send)) -> Result<Counts, TransferError> {
        let e = self.db.engine;
        let fail = |f: Failure| self.transfer_error(f);
        let mut tx = self
            .db
            .pool
            .begin()
            .await
            .during("starting the import")
            .map_err(fail)?;
        for table in TABLES {
            let rows: i64 = sqlx::query(AssertSqlSafe(table.count()))
                .fetch_one(&mut *tx)
                .await
                .and_then(|row| row.try_get(0))
                .during("checking the target is empty")
                .map_err(fail)?;
            if rows > 0 {
                return Err(TransferError::NotEmpty {
                    table: table.name,
                    rows: u64::try_from(rows).unwrap_or(u64::MAX),
                });
            }
        }
        let mut reader = ImportReader::new(input);
        while let Some(row) = reader.next_row()? {
            let mut query = sqlx::query(e.sql(row.table.insert()));
            for value in &row.values {
                query = bind(query, value.param());
            }
            query
                .execute(&mut *tx)
                .await
                .during("importing a row")
                .map_err(fail)?;
        }
        for statement in after_import(e) {
            sqlx::raw_sql(*statement)
                .execute(&mut *tx)
                .await
                .during("moving identity sequences past the imported ids")
                .map_err(fail)?;
        }
        tx.commit()
            .await
            .during("committing the import")
            .map_err(fail)?;
        Ok(reader.counts().clone())
    }
}

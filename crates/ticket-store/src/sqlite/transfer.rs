//! [`Transfer`] for [`SqliteStore`]: the export reads one snapshot on a read connection and
//! streams it to the async writer through a channel; the import runs as one writer job (one
//! transaction). See [`crate::transfer`] for the format.

use std::io::{BufRead, Write};

use async_trait::async_trait;

use super::rows::During;
use super::{migrate, SqliteStore};
use crate::rows::SqlValue;
use crate::transfer::{
    Counts, ExportWriter, ImportReader, ImportRow, Transfer, TransferError, TABLES,
};

/// Rows that may wait between the reading thread and the writer of the file.
const CHANNEL_DEPTH: usize = 1024;

#[async_trait]
impl Transfer for SqliteStore {
    async fn export(&self, out: &mut (dyn Write + Send)) -> Result<Counts, TransferError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(CHANNEL_DEPTH);
        let produce = self.read(move |conn| {
            // One read transaction: every table from the same snapshot.
            let snapshot = conn
                .transaction()
                .during("starting the export's snapshot")?;
            for (index, table) in TABLES.iter().enumerate() {
                let mut stmt = snapshot
                    .prepare(&table.select())
                    .during("preparing an export query")?;
                let mut rows = stmt.query([]).during("reading rows to export")?;
                while let Some(row) = rows.next().during("reading rows to export")? {
                    let value = table.to_json(row).during("reading rows to export")?;
                    if tx.blocking_send((index, value)).is_err() {
                        // The writer stopped (its error is the one reported).
                        return Ok(());
                    }
                }
            }
            Ok(())
        });
        let consume = async {
            let mut writer = ExportWriter::start(out, "sqlite", migrate::latest_version())?;
            while let Some((index, value)) = rx.recv().await {
                writer.row(&TABLES[index], value)?;
            }
            Ok::<_, TransferError>(writer)
        };
        let (produced, written) = tokio::join!(produce, consume);
        let writer = written?;
        produced?;
        writer.finish()
    }

    async fn import(&self, input: &mut (dyn BufRead + Send)) -> Result<Counts, TransferError> {
        // The whole file is checked (down to its `end` line) before anything is written.
        let mut reader = ImportReader::new(input);
        let mut rows: Vec<ImportRow> = Vec::new();
        while let Some(row) = reader.next_row()? {
            rows.push(row);
        }
        let counts = reader.counts().clone();
        self.writer
            .submit(move |tx| {
                // Every order may change: the writer's snapshots start afresh.
                tx.snapshots.clear();
                let conn = tx.conn;
                for table in TABLES {
                    let n: i64 = conn
                        .query_row(&table.count(), [], |row| row.get(0))
                        .during("checking the target is empty")?;
                    if n > 0 {
                        return Ok(Err(TransferError::NotEmpty {
                            table: table.name,
                            rows: u64::try_from(n).unwrap_or(u64::MAX),
                        }));
                    }
                }
                for row in &rows {
                    let values = row.values.iter().map(SqlValue::param);
                    conn.prepare_cached(&row.table.insert())
                        .during("preparing an import statement")?
                        .execute(rusqlite::params_from_iter(values))
                        .during("importing a row")?;
                }
                conn.execute(crate::transfer::AFTER_IMPORT_EVENTS, [])
                    .during("moving the event counter past the imported events")?;
                conn.execute(crate::statements::SQLITE_COUNTED_AFTER_IMPORT, [])
                    .during("marking the imported uses counted")?;
                Ok(Ok(()))
            })
            .await??;
        Ok(counts)
    }
}

//! What the sweeper does for files: removes the bytes of files deleted,
//! expired or given up mid-upload (a crash included) and then their rows,
//! and uploads a crash left in the spool folder;
//! and, when storage is priced, charges each UTC day once it has ended.
//! Every instance may run it: each step is safe to repeat or to race.

use crate::state::App;

const DAY_MS: i64 = 86_400_000;
/// Days charged late at most, after a long stop.
const MAX_DAYS_BEHIND: i64 = 31;
/// A day is charged this long after it ended, so that an instance whose
/// clock runs ahead does not charge a day others are still storing in.
const DAY_SETTLED_AFTER_MS: i64 = 10 * 60_000;
/// The setting that says since when storage is priced (Unix ms): no time
/// before it is ever charged.
const PRICED_SINCE: &str = "storage_priced_since";

/// One pass; failures are logged and retried on the next.
pub async fn sweep(app: &App) {
    let removed = remove_due(app).await;
    if removed > 0 {
        tracing::info!(
            removed,
            "files removed (deleted, expired or abandoned uploads)"
        );
    }
    clear_spool(app).await;
    let priced = match app.files.price() {
        Some(price) => charge_days(app, price).await,
        None => unpriced(app).await,
    };
    if let Err(e) = priced {
        tracing::warn!(error = %e, "storage charges: retried on the next pass");
    }
}

/// Removes what is due, batch by batch; how many files. A file whose bytes
/// cannot be removed now goes to the back of the queue and holds up none
/// of the others.
async fn remove_due(app: &App) -> usize {
    let keep_for_charging = app.files.price().is_some();
    // An upload is given up a little after its time ran out (its own
    // process refuses it at `upload_ttl_secs`; clocks of instances differ).
    let ttl_ms = i64::try_from(app.files.config.upload_ttl_secs)
        .unwrap_or(i64::MAX / 2000)
        .saturating_mul(1100)
        .saturating_add(2000);
    let mut removed = 0;
    loop {
        let now = store::now_ms();
        let due = match app.store.files_to_remove(now, now - ttl_ms).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "files due for removal could not be read");
                return removed;
            }
        };
        let mut failed = false;
        for id in &due {
            let done = match app.files.storage.delete(id).await {
                Ok(()) => app
                    .store
                    .file_removed(id, keep_for_charging)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match done {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(file = %id, %error, "a file could not be removed; tried again later");
                    failed = true;
                    if let Err(e) = app.store.file_removal_failed(id).await {
                        tracing::warn!(file = %id, error = %e, "could not requeue a file's removal");
                    }
                }
            }
        }
        // A short batch was the last; after a failure, the next pass.
        if failed || (due.len() as i64) < store::FILE_CLEANUP_BATCH {
            return removed;
        }
    }
}

/// Storage is free: nothing is charged from now on, and the deleted files
/// kept for charging go.
async fn unpriced(app: &App) -> Result<(), store::StoreError> {
    app.store.delete_setting(PRICED_SINCE).await?;
    app.store.purge_deleted_files().await?;
    Ok(())
}

/// Charges the days ended since the last one charged, from when storage
/// became priced on.
async fn charge_days(app: &App, nano_per_gb_day: i64) -> Result<(), store::StoreError> {
    let now = store::now_ms();
    // Instances agree on the first time one of them saw storage priced.
    app.store
        .insert_setting_if_absent(PRICED_SINCE, &now.to_string())
        .await?;
    let since = app
        .store
        .get_setting(PRICED_SINCE)
        .await?
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(now);
    let today = (now - DAY_SETTLED_AFTER_MS) / DAY_MS;
    let last = app.store.last_storage_day().await?;
    let first = last
        .map_or(i64::MIN, |d| d + 1)
        .max(since / DAY_MS)
        .max(today - MAX_DAYS_BEHIND);
    for day in first..today {
        let date = crate::time::format_ms(day * DAY_MS);
        let reason = format!("file storage on {}", &date[..10]);
        let charged = app
            .store
            .charge_storage_day(day, nano_per_gb_day, &reason, since)
            .await?;
        if let Some(charges) = charged {
            let total = charges.iter().fold(0i64, |sum, c| sum.saturating_add(c.1));
            tracing::info!(day = %&date[..10], users = charges.len(), nano_usd = total, "storage charged");
        }
    }
    Ok(())
}

/// Removes what a crash left in the spool folder (uploads on their way to
/// an upstream, e.g. audio to transcribe): files older than an upload's
/// time, and than an hour.
async fn clear_spool(app: &App) {
    let Ok(mut entries) = tokio::fs::read_dir(super::spool_dir()).await else {
        return;
    };
    // The folder is the machine's: at least an hour, whatever this
    // instance's upload time (another's uploads may be on their way).
    let ttl = std::time::Duration::from_secs(app.files.config.upload_ttl_secs.max(3600));
    while let Ok(Some(entry)) = entries.next_entry().await {
        let old = entry
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > ttl);
        if old {
            if let Err(e) = tokio::fs::remove_file(entry.path()).await {
                tracing::warn!(error = %e, "a stale spooled upload was not removed");
            }
        }
    }
}

//! What the sweeper does for files: removes the bytes of files deleted,
//! expired or given up mid-upload (a crash included) and then their rows;
//! and, when storage is priced, charges each UTC day once it has ended.
//! Every instance may run it: each step is safe to repeat or to race.

use crate::state::App;

const DAY_MS: i64 = 86_400_000;
/// Days charged late at most, after a long stop.
const MAX_DAYS_BEHIND: i64 = 31;

/// One pass; failures are logged and retried on the next.
pub async fn sweep(app: &App) {
    let removed = remove_due(app).await;
    if removed > 0 {
        tracing::info!(
            removed,
            "files removed (deleted, expired or abandoned uploads)"
        );
    }
    if let Some(price) = app.files.price() {
        charge_days(app, price).await;
    }
}

/// Removes what is due, batch by batch; how many files.
async fn remove_due(app: &App) -> usize {
    let keep_for_charging = app.files.price().is_some();
    // An upload is given up a little after its time ran out (its own
    // process refuses it at `upload_ttl_secs`; clocks of instances differ).
    let ttl_ms = i64::try_from(app.files.config.upload_ttl_secs)
        .unwrap_or(i64::MAX / 2)
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
        let batch = due.len();
        for id in &due {
            if let Err(e) = app.files.storage.delete(id).await {
                // Kept `deleting`: the next pass tries again.
                tracing::warn!(file = %id, error = %e, "a file's bytes could not be removed");
                return removed;
            }
            if let Err(e) = app.store.file_removed(id, keep_for_charging).await {
                tracing::warn!(file = %id, error = %e, "a removed file's row was not updated");
                return removed;
            }
            removed += 1;
        }
        if (batch as i64) < store::FILE_CLEANUP_BATCH {
            return removed;
        }
    }
}

/// Charges the days ended since the last one charged (the first time:
/// yesterday only).
async fn charge_days(app: &App, nano_per_gb_day: i64) {
    let today = store::now_ms() / DAY_MS;
    let last = match app.store.last_storage_day().await {
        Ok(last) => last,
        Err(e) => {
            tracing::warn!(error = %e, "storage charges could not be read");
            return;
        }
    };
    let first = last
        .map_or(today - 1, |d| d + 1)
        .max(today - MAX_DAYS_BEHIND);
    for day in first..today {
        let date = crate::time::format_ms(day * DAY_MS);
        let reason = format!("file storage on {}", &date[..10]);
        match app
            .store
            .charge_storage_day(day, nano_per_gb_day, &reason)
            .await
        {
            Ok(Some(charges)) => {
                let total = charges.iter().fold(0i64, |sum, c| sum.saturating_add(c.1));
                tracing::info!(day = %&date[..10], users = charges.len(), nano_usd = total, "storage charged");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "storage could not be charged; retried on the next pass");
                return;
            }
        }
    }
}

//! The console's files page: the user's files, newest first, each linked
//! for download (with the session, served as the file API serves it) and deleted here (the
//! bytes too, as the file API does). Another user's file is 404.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::session::{csrf_ok, Member};
use super::{language, page, posted_csrf, Lang, Texts};
use crate::state::App;

/// Most files the page lists.
const MOST: i64 = 200;

struct FileRow {
    id: String,
    name: String,
    size: i64,
    public: bool,
    expires: String,
}

#[derive(Template)]
#[template(path = "console/files.html")]
struct FilesPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    files: Vec<FileRow>,
}

pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Member(session): Member,
) -> Response {
    let (t, remember) = language(&headers, &lang);
    let filter = store::FileFilter {
        limit: MOST,
        ..store::FileFilter::default()
    };
    let files = match app.store.list_files(session.user.id, &filter).await {
        Ok((files, _)) => files,
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    };
    let html = FilesPage {
        t,
        title: t.files,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        files: files
            .into_iter()
            .map(|f| FileRow {
                expires: f
                    .expires_at
                    .map_or(t.never.to_string(), crate::time::format_ms),
                id: f.id,
                name: f.filename,
                size: f.size,
                public: f.is_public,
            })
            .collect(),
    }
    .render();
    page(html, &remember.into_iter().collect::<Vec<_>>())
}

/// `GET /console/files/{id}/download`: the member's own file (public or
/// not), served as the file API serves it, with the session for a key.
pub async fn download(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Member(session): Member,
) -> Response {
    let owner = session.user.id;
    match crate::api::files::visible_file(&app, &id, |f| f.user_id == owner).await {
        Ok(file) => crate::api::files::serve(&app, &file, &headers, "private, no-cache").await,
        Err(_) => (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
}

pub async fn delete(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let given = posted_csrf(&body);
    if !csrf_ok(&session, given.as_deref()) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    match app.store.start_deleting_file(session.user.id, &id).await {
        Ok(true) => {}
        Ok(false) => return (StatusCode::NOT_FOUND, "Not found").into_response(),
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    }
    // The bytes now; what fails is the sweeper's (the row says what to remove).
    if app.files.storage.delete(&id).await.is_ok() {
        let keep = app.files.price().is_some();
        if let Err(e) = app.store.file_removed(&id, keep).await {
            tracing::warn!(file = %id, error = %e, "a deleted file's row is left to the sweeper");
        }
    }
    Redirect::to("/console/files").into_response()
}

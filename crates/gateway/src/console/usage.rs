//! The console's usage page: the user's requests, newest first, filtered by
//! model, key and dates, a page at a time (the API's cursor), and the same
//! selection as CSV, streamed page by page (never the whole log in memory).

use askama::Template;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::session::Member;
use super::{language, page, Lang, Texts};
use crate::api::usage::UsageQuery;
use crate::money::format_usd;
use crate::state::App;

/// Records a page shows, and a CSV page fetches at once.
const PAGE: i64 = 50;
const CSV_PAGE: i64 = 1000;

#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    model: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    cursor: Option<String>,
    lang: Option<String>,
}

impl Filters {
    fn query(&self, limit: i64) -> UsageQuery {
        let text = |s: &String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        UsageQuery {
            since: text(&self.since),
            until: text(&self.until),
            model: text(&self.model),
            key: text(&self.key),
            limit: Some(limit),
            cursor: self.cursor.clone(),
        }
    }

    /// These filters as a query string (without the cursor).
    fn encoded(&self) -> String {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        [
            ("model", &self.model),
            ("key", &self.key),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

struct Row {
    time: String,
    model: String,
    key: String,
    tokens: String,
    cost: String,
    latency: i64,
    status: i64,
}

#[derive(Template)]
#[template(path = "console/usage.html")]
struct UsagePage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    model: String,
    key: String,
    since: String,
    until: String,
    query: String,
    rows: Vec<Row>,
    next: Option<String>,
}

fn tokens(r: &store::UsageRecord) -> String {
    match r.unit.as_str() {
        "" => format!("{} / {}", r.input_tokens, r.output_tokens),
        unit => format!("{} {unit}", r.input_tokens),
    }
}

pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
    Member(session): Member,
) -> Response {
    let lang = Lang {
        lang: filters.lang.clone(),
    };
    let (t, remember) = language(&headers, &lang);
    let found = async {
        let filter = filters.query(PAGE).to_filter(session.user.id)?;
        Ok::<_, crate::error::ApiError>(app.store.list_usage(&filter).await?)
    }
    .await;
    let (mut records, error) = match found {
        Ok(records) => (records, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    // One more than a page was asked for: whether another follows.
    let more = records.len() as i64 > PAGE;
    records.truncate(PAGE as usize);
    let next = match (more, records.last()) {
        (true, Some(last)) => Some(format!(
            "{}{}cursor={}_{}",
            filters.encoded(),
            if filters.encoded().is_empty() {
                ""
            } else {
                "&"
            },
            last.created_at,
            last.request_id
        )),
        _ => None,
    };
    let html = UsagePage {
        t,
        title: t.usage,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        error,
        model: filters.model.clone(),
        key: filters.key.clone(),
        since: filters.since.clone(),
        until: filters.until.clone(),
        query: filters.encoded(),
        rows: records
            .iter()
            .map(|r| Row {
                time: crate::time::format_ms(r.created_at),
                model: r.model.clone(),
                key: r.key_id.clone(),
                tokens: tokens(r),
                cost: format_usd(r.cost),
                latency: r.latency_ms,
                status: r.status,
            })
            .collect(),
        next,
    }
    .render();
    page(html, &remember.into_iter().collect::<Vec<_>>())
}

/// `GET /console/usage.csv`: the selection, every page of it, streamed.
pub async fn csv(
    State(app): State<App>,
    Query(filters): Query<Filters>,
    Member(session): Member,
) -> Response {
    let filter = match filters.query(CSV_PAGE).to_filter(session.user.id) {
        Ok(filter) => filter,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let header_row = Bytes::from_static(
        b"time,request_id,model,key_id,endpoint,input_tokens,output_tokens,unit,cost_usd,latency_ms,status\n",
    );
    let pages = futures_util::stream::unfold(Some(filter), move |state| {
        let app = app.clone();
        async move {
            let mut filter = state?;
            let mut records = match app.store.list_usage(&filter).await {
                Ok(records) => records,
                Err(e) => {
                    tracing::error!(error = %e, "a usage export stopped");
                    return Some((Err(std::io::Error::other("the export stopped")), None));
                }
            };
            let more = records.len() as i64 >= filter.limit;
            records.truncate((filter.limit - 1).max(0) as usize);
            let mut out = String::new();
            for r in &records {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{},{},{}\n",
                    crate::time::format_ms(r.created_at),
                    field(&r.request_id),
                    field(&r.model),
                    field(&r.key_id),
                    field(&r.endpoint),
                    r.input_tokens,
                    r.output_tokens,
                    field(&r.unit),
                    format_usd(r.cost),
                    r.latency_ms,
                    r.status
                ));
            }
            let next = match (more, records.last()) {
                (true, Some(last)) => {
                    filter.before = Some((last.created_at, last.request_id.clone()));
                    Some(filter)
                }
                _ => None,
            };
            Some((Ok(Bytes::from(out)), next))
        }
    });
    let body = futures_util::stream::once(async move { Ok(header_row) }).chain(pages);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"tollgate-usage.csv\"",
        )
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A CSV field: quoted when it holds a comma, a quote or a line break, and
/// never starting a formula in a spreadsheet.
fn field(text: &str) -> String {
    let text = match text.starts_with(['=', '+', '-', '@']) {
        true => format!("'{text}"),
        false => text.to_string(),
    };
    match text.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", text.replace('"', "\"\"")),
        false => text,
    }
}

use futures_util::StreamExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(field("gpt-4o"), "gpt-4o");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}

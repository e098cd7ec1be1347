//! The console's usage page: the user's requests, newest first, filtered by
//! model, key and dates, a page at a time (the API's cursor), and the same
//! selection as CSV, streamed page by page (never the whole log in memory).
//! The admin's page is the same log across all users, filtered by user,
//! model and channel too, with the selection's totals and a chart by day.

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
    /// The admin's page only: a user's id or name, and a channel.
    #[serde(default)]
    user: String,
    #[serde(default)]
    channel: String,
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
            ("user", &self.user),
            ("channel", &self.channel),
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
    let (records, error) = match found {
        Ok(records) => (records, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let (records, next) = one_page(records, &filters);
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

/// The first [`PAGE`] of `records` (one more was asked for: whether another
/// page follows), and the next page's query string if one does.
fn one_page(
    mut records: Vec<store::UsageRecord>,
    filters: &Filters,
) -> (Vec<store::UsageRecord>, Option<String>) {
    let more = records.len() as i64 > PAGE;
    records.truncate(PAGE as usize);
    let next = match (more, records.last()) {
        (true, Some(last)) => {
            let mut query = filters.encoded();
            if !query.is_empty() {
                query.push('&');
            }
            Some(format!(
                "{query}cursor={}_{}",
                last.created_at, last.request_id
            ))
        }
        _ => None,
    };
    (records, next)
}

struct AdminRow {
    time: String,
    user: i64,
    model: String,
    channel: String,
    tokens: String,
    cost: String,
    latency: i64,
    status: i64,
}

#[derive(Template)]
#[template(path = "console/admin_usage.html")]
struct AdminUsagePage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    user: String,
    model: String,
    channel: String,
    since: String,
    until: String,
    requests: i64,
    cost: String,
    tokens: i64,
    chart: String,
    rows: Vec<AdminRow>,
    next: Option<String>,
}

/// `GET /console/admin/usage`: everyone's records (a console admin only;
/// anyone else gets 404), the selection's totals and its chart by day.
pub async fn all_users(
    State(app): State<App>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
    Member(session): Member,
) -> Response {
    if !session.is_admin {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    let lang = Lang {
        lang: filters.lang.clone(),
    };
    let (t, remember) = language(&headers, &lang);
    let found = async {
        let mut filter = filters.query(PAGE).to_filter(0)?;
        filter.user_id = user_of(&app, &filters.user).await?;
        filter.provider = Some(filters.channel.trim().to_string()).filter(|c| !c.is_empty());
        let records = app.store.list_usage(&filter).await?;
        let days = app.store.usage_by_day(&filter).await?;
        Ok::<_, crate::error::ApiError>((records, days))
    }
    .await;
    let (records, days, error) = match found {
        Ok((records, days)) => (records, days, None),
        Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
    };
    let (records, next) = one_page(records, &filters);
    let sum = |f: fn(&store::DayTotals) -> i64| days.iter().map(f).fold(0i64, i64::saturating_add);
    let html = AdminUsagePage {
        t,
        title: t.all_usage,
        user_name: Some(session.user.name.clone()),
        is_admin: true,
        csrf: session.csrf_token.clone(),
        error,
        user: filters.user.clone(),
        model: filters.model.clone(),
        channel: filters.channel.clone(),
        since: filters.since.clone(),
        until: filters.until.clone(),
        requests: sum(|d| d.requests),
        cost: format_usd(sum(|d| d.cost)),
        tokens: sum(|d| d.tokens),
        chart: days_chart(&days),
        rows: records
            .iter()
            .map(|r| AdminRow {
                time: crate::time::format_ms(r.created_at),
                user: r.user_id,
                model: r.model.clone(),
                channel: r.provider.clone(),
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

/// The user a filter names: an id, or a name; empty is everyone.
async fn user_of(app: &App, given: &str) -> Result<Option<i64>, crate::error::ApiError> {
    let given = given.trim();
    if given.is_empty() {
        return Ok(None);
    }
    if let Ok(id) = given.parse::<i64>() {
        return Ok(Some(id));
    }
    match app.store.find_user_by_name(given).await {
        Ok(user) => Ok(Some(user.id)),
        Err(store::StoreError::NotFound(_)) => Err(crate::error::ApiError::BadRequest(format!(
            "No user is named {given}."
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The chart's series, one point per day that has records: the day (Unix
/// seconds), spend (USD) and tokens.
fn days_chart(days: &[store::DayTotals]) -> String {
    let json = serde_json::json!({
        "days": days.iter().map(|d| d.day * 86_400).collect::<Vec<_>>(),
        "cost": days.iter().map(|d| d.cost as f64 / 1e9).collect::<Vec<_>>(),
        "tokens": days.iter().map(|d| d.tokens).collect::<Vec<_>>(),
    });
    // Safe inside a <script> element: no `<` can close it or open a comment.
    json.to_string().replace('<', "\\u003c")
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
    let text = match text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
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
        assert_eq!(field("\t=1"), "'\t=1");
    }
}

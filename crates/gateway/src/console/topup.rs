//! The console's top-up pages: a member orders an amount and is sent to
//! the processor's page to pay it (checkout or invoice), sees their orders
//! and each order's receipt; an admin sees every order, the totals per day,
//! reconciles with the processor and refunds. All of it through the same
//! service as the API (`crate::payments::Payments`).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use store::{Order, OrderFilter, OrderState};

use super::session::{csrf_ok, Member};
use super::{form, language, page, posted_csrf, Lang, Texts};
use crate::money::{format_credits, format_usd};
use crate::payments::{format_amount, format_minor, Method};
use crate::state::App;
use crate::time::{format_day, format_ms};

/// Most orders a page lists.
const MOST_ORDERS: i64 = 100;
/// Days of totals the admin page shows.
const TOTAL_DAYS: i64 = 30;

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not found").into_response()
}

/// An order as a row of a page.
pub struct OrderRow {
    id: i64,
    user_id: i64,
    method: String,
    state: &'static str,
    paid: bool,
    pending: bool,
    amount: String,
    credit: String,
    refunded: String,
    created: String,
    paid_at: String,
    pay_url: String,
    receipt_url: String,
}

fn order_row(t: &Texts, credits_per_usd: u64, order: &Order) -> OrderRow {
    let currency = order.currency.to_uppercase();
    let amount = |units: i64| format!("{} {currency}", format_minor(&order.currency, units));
    OrderRow {
        id: order.id,
        user_id: order.user_id,
        method: order.method.clone(),
        state: t.order_state(order.state),
        paid: order.state == OrderState::Paid,
        pending: order.state == OrderState::Pending,
        amount: amount(order.amount),
        credit: format_credits(order.credit, credits_per_usd),
        refunded: if order.refunded_amount > 0 {
            amount(order.refunded_amount)
        } else {
            String::new()
        },
        created: format_ms(order.created_at),
        paid_at: order.paid_at.map(format_ms).unwrap_or_default(),
        pay_url: order.pay_url.clone().unwrap_or_default(),
        receipt_url: order.receipt_url.clone().unwrap_or_default(),
    }
}

struct Preset {
    value: String,
    label: String,
}

#[derive(Template)]
#[template(path = "console/topup.html")]
struct TopupPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    enabled: bool,
    currency: String,
    min_amount: String,
    max_amount: String,
    presets: Vec<Preset>,
    bonus: Vec<(String, String)>,
    amount: String,
    notice: Option<String>,
    error: Option<String>,
    orders: Vec<OrderRow>,
}

#[derive(Deserialize, Default)]
pub struct TopupQuery {
    lang: Option<String>,
    paid: Option<String>,
    cancelled: Option<String>,
}

pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<TopupQuery>,
    Member(session): Member,
) -> Response {
    let (t, remember) = language(
        &headers,
        &Lang {
            lang: query.lang.clone(),
        },
    );
    let notice = if query.paid.is_some() {
        Some(t.payment_thanks.to_string())
    } else if query.cancelled.is_some() {
        Some(t.payment_cancelled.to_string())
    } else {
        None
    };
    let mut response = render_topup(&app, t, &session, String::new(), notice, None).await;
    if let Some(cookie) = remember {
        if let Ok(value) = cookie.parse() {
            response
                .headers_mut()
                .append(axum::http::header::SET_COOKIE, value);
        }
    }
    response
}

async fn render_topup(
    app: &App,
    t: &'static Texts,
    session: &store::Session,
    amount: String,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let user = &session.user;
    let mut view = TopupPage {
        t,
        title: t.top_up,
        user_name: Some(user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        enabled: false,
        currency: String::new(),
        min_amount: String::new(),
        max_amount: String::new(),
        presets: Vec::new(),
        bonus: Vec::new(),
        amount,
        notice,
        error,
        orders: Vec::new(),
    };
    if let Some(payments) = &app.payments {
        let terms = payments.terms();
        let format = |units: i64| format_amount(terms, units);
        view.enabled = true;
        view.currency = terms.currency.to_uppercase();
        view.min_amount = format(terms.min_amount);
        view.max_amount = format(terms.max_amount);
        view.presets = terms
            .presets
            .iter()
            .map(|p| Preset {
                value: format(*p),
                label: format!("{} {}", format(*p), view.currency),
            })
            .collect();
        view.bonus = terms
            .bonus
            .iter()
            .map(|(from, percent)| (format!("+{percent}%"), format(*from)))
            .collect();
        let orders = app
            .store
            .list_orders(&OrderFilter {
                user_id: Some(user.id),
                limit: MOST_ORDERS,
                ..OrderFilter::default()
            })
            .await;
        match orders {
            Ok(orders) => {
                view.orders = orders
                    .iter()
                    .map(|o| order_row(t, app.config.credits_per_usd, o))
                    .collect()
            }
            Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
        }
    }
    let status = if view.error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = page(view.render(), &[]);
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct OrderForm {
    csrf: String,
    amount: String,
    #[serde(default)]
    method: String,
}

/// `POST /console/topup`: makes the order and sends the browser to pay it.
pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let Ok(order_form) = form::<OrderForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&order_form.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let Some(payments) = &app.payments else {
        return not_found();
    };
    let Some(method) = Method::parse(&order_form.method) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    match payments
        .open_order(&app.store, session.user.id, method, &order_form.amount)
        .await
    {
        Ok(order) => match order.pay_url {
            Some(url) => Redirect::to(&url).into_response(),
            None => Redirect::to("/console/topup").into_response(),
        },
        Err(e) => {
            render_topup(
                &app,
                t,
                &session,
                order_form.amount,
                None,
                Some(e.to_string()),
            )
            .await
        }
    }
}

#[derive(Template)]
#[template(path = "console/receipt.html")]
struct ReceiptPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    order: OrderRow,
    bonus: String,
    external_id: String,
    credit_usd: String,
}

/// `GET /console/topup/orders/{id}`: one of the member's orders, printable
/// as a receipt. Another user's order is 404 (to an admin too: theirs is
/// the admin page).
pub async fn receipt(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(lang): Query<Lang>,
    Member(session): Member,
) -> Response {
    let (t, _) = language(&headers, &lang);
    let Some(_) = &app.payments else {
        return not_found();
    };
    let order = match app.store.get_order(id).await {
        Ok(order) if order.user_id == session.user.id => order,
        Ok(_) | Err(store::StoreError::NotFound(_)) => return not_found(),
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    };
    let cpu = app.config.credits_per_usd;
    let html = ReceiptPage {
        t,
        title: t.receipt,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        bonus: format_credits(order.bonus, cpu),
        external_id: order.external_id.clone().unwrap_or_default(),
        credit_usd: format_usd(order.credit),
        order: order_row(t, cpu, &order),
    }
    .render();
    page(html, &[])
}

struct DayRow {
    day: String,
    orders: i64,
    amount: String,
    credit: String,
    refunded: String,
}

#[derive(Template)]
#[template(path = "console/admin_orders.html")]
struct AdminOrdersPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    enabled: bool,
    state_options: Vec<(&'static str, bool)>,
    /// A fresh nonce per page: each refund form sent once refunds once.
    refund_key: String,
    notice: Option<String>,
    error: Option<String>,
    days: Vec<DayRow>,
    orders: Vec<OrderRow>,
}

#[derive(Deserialize, Default)]
pub struct AdminQuery {
    lang: Option<String>,
    #[serde(default)]
    state: String,
    user: Option<i64>,
}

pub async fn admin_list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<AdminQuery>,
    Member(session): Member,
) -> Response {
    if !session.is_admin {
        return not_found();
    }
    let (t, _) = language(
        &headers,
        &Lang {
            lang: query.lang.clone(),
        },
    );
    render_admin(&app, t, &session, &query, None, None).await
}

async fn render_admin(
    app: &App,
    t: &'static Texts,
    session: &store::Session,
    query: &AdminQuery,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let mut view = AdminOrdersPage {
        t,
        title: t.orders,
        user_name: Some(session.user.name.clone()),
        is_admin: true,
        csrf: session.csrf_token.clone(),
        enabled: app.payments.is_some(),
        state_options: ["pending", "paid", "expired", "failed", "refunded"]
            .into_iter()
            .map(|s| (s, s == query.state))
            .collect(),
        refund_key: hex::encode(rand::random::<[u8; 16]>()),
        notice,
        error,
        days: Vec::new(),
        orders: Vec::new(),
    };
    if app.payments.is_some() {
        let cpu = app.config.credits_per_usd;
        let since = (store::now_ms() / 86_400_000 - TOTAL_DAYS + 1) * 86_400_000;
        let read = async {
            let days = app.store.paid_by_day(since).await?;
            let orders = app
                .store
                .list_orders(&OrderFilter {
                    user_id: query.user,
                    state: OrderState::parse(&query.state),
                    limit: MOST_ORDERS,
                    ..OrderFilter::default()
                })
                .await?;
            Ok::<_, store::StoreError>((days, orders))
        }
        .await;
        let Ok((days, orders)) = read else {
            return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
        };
        let amount = |units: i64, currency: &str| {
            format!(
                "{} {}",
                format_minor(currency, units),
                currency.to_uppercase()
            )
        };
        view.days = days
            .iter()
            .map(|d| DayRow {
                day: format_day(d.day),
                orders: d.orders,
                amount: amount(d.amount, &d.currency),
                credit: format_credits(d.credit, cpu),
                refunded: amount(d.refunded_amount, &d.currency),
            })
            .collect();
        view.orders = orders.iter().map(|o| order_row(t, cpu, o)).collect();
    }
    let status = if view.error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = page(view.render(), &[]);
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct RefundForm {
    csrf: String,
    #[serde(default)]
    amount: String,
    /// The page's nonce: the same form sent twice is one refund.
    #[serde(default)]
    refund_key: String,
}

/// `POST /console/admin/orders/{id}/refund`: refunds through the processor.
pub async fn admin_refund(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Member(session): Member,
    body: Bytes,
) -> Response {
    if !session.is_admin {
        return not_found();
    }
    let (t, _) = language(&headers, &Lang::default());
    let Ok(refund_form) = form::<RefundForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&refund_form.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let Some(payments) = &app.payments else {
        return not_found();
    };
    let amount = Some(refund_form.amount.as_str());
    let key = Some(refund_form.refund_key.as_str()).filter(|k| !k.is_empty());
    match payments.refund(&app.store, id, amount, key).await {
        Ok(_) => Redirect::to("/console/admin/orders").into_response(),
        Err(e) => {
            render_admin(
                &app,
                t,
                &session,
                &AdminQuery::default(),
                None,
                Some(e.to_string()),
            )
            .await
        }
    }
}

/// `POST /console/admin/orders/reconcile`: the last 3 days.
pub async fn admin_reconcile(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    body: Bytes,
) -> Response {
    if !session.is_admin {
        return not_found();
    }
    let (t, _) = language(&headers, &Lang::default());
    let given = posted_csrf(&body);
    if !csrf_ok(&session, given.as_deref()) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let Some(payments) = &app.payments else {
        return not_found();
    };
    let (notice, error) = match payments.reconcile(&app.store, 3).await {
        Ok(report) => (
            Some(
                t.reconciled
                    .replace("{checked}", &report.checked.to_string())
                    .replace("{credited}", &report.credited.len().to_string()),
            ),
            None,
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    render_admin(&app, t, &session, &AdminQuery::default(), notice, error).await
}

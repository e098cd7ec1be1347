//! The hosted pages a browser test walks through: Checkout's payment page
//! (`/c/pay/{id}`: a Pay button and a cancel link) and the hosted invoice
//! page (`/i/{id}`, and a stand-in PDF).

use std::sync::Arc;

use axum::extract::{Path, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::control;
use crate::objects::money;
use crate::state::State;

type Shared = AxumState<Arc<State>>;

/// Escapes text for HTML (contents and double-quoted attributes).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{body}\n</body></html>\n",
        escape(title)
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn not_found(what: &str, id: &str) -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("<p id=\"error\">No such {what}: {}</p>", escape(id)),
    )
}

pub(crate) async fn checkout_page(AxumState(state): Shared, Path(id): Path<String>) -> Response {
    let store = state.lock();
    let Some(session) = store.session(&id) else {
        return not_found("checkout session", &id);
    };
    let amount = money(session.amount_total, &session.currency);
    let mut body = format!(
        "<h1 id=\"product\">{}</h1>\n<p>Pay <span id=\"amount\">{}</span> \
         (<span id=\"currency\">{}</span>)</p>\n<p>Status: <span id=\"status\">{}</span></p>\n",
        escape(&session.product_name()),
        escape(&amount),
        escape(&session.currency.to_ascii_uppercase()),
        session.status,
    );
    if session.status == "open" {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/c/pay/{}\">\n<button id=\"pay\" type=\"submit\">Pay</button>\n</form>\n",
            escape(&session.id)
        ));
        if let Some(cancel) = &session.cancel_url {
            body.push_str(&format!(
                "<p><a id=\"cancel\" href=\"{}\">Cancel</a></p>\n",
                escape(cancel)
            ));
        }
    }
    page(StatusCode::OK, &format!("Pay {amount}"), &body)
}

/// The Pay button: pays the session (synchronously), delivers
/// `checkout.session.completed`, and sends the browser to the success URL.
pub(crate) async fn checkout_submit(AxumState(state): Shared, Path(id): Path<String>) -> Response {
    if let Err(e) = control::pay_checkout(&state, &id, false).await {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = format!("<p id=\"error\">{}</p>", escape(e.message()));
        return page(status, "Payment failed", &body);
    }
    let success_url = state
        .lock()
        .session(&id)
        .map(|s| s.success_url.replace("{CHECKOUT_SESSION_ID}", &s.id))
        .unwrap_or_default();
    (StatusCode::SEE_OTHER, [(header::LOCATION, success_url)]).into_response()
}

pub(crate) async fn invoice_page(AxumState(state): Shared, Path(id): Path<String>) -> Response {
    let store = state.lock();
    // Drafts have no hosted page on Stripe either.
    let Some(invoice) = store.invoice(&id).filter(|i| i.status != "draft") else {
        return not_found("invoice", &id);
    };
    let total = store.invoice_total(&id).max(0);
    let lines: String = store
        .items_of(&id)
        .iter()
        .map(|item| {
            format!(
                "<li>{}: {}</li>\n",
                escape(item.description.as_deref().unwrap_or("Item")),
                escape(&money(item.amount, &item.currency))
            )
        })
        .collect();
    let body = format!(
        "<h1>Invoice <span id=\"number\">{}</span></h1>\n<p>Amount: <span id=\"amount\">{}</span></p>\n\
         <p>Status: <span id=\"status\">{}</span></p>\n<ul>\n{lines}</ul>\n",
        escape(invoice.number.as_deref().unwrap_or_default()),
        escape(&money(total, &invoice.currency)),
        invoice.status,
    );
    page(StatusCode::OK, "Invoice", &body)
}

/// A stand-in for the invoice's PDF (a link that works; not a real PDF
/// document).
pub(crate) async fn invoice_pdf(AxumState(state): Shared, Path(id): Path<String>) -> Response {
    let store = state.lock();
    let Some(invoice) = store.invoice(&id).filter(|i| i.status != "draft") else {
        return not_found("invoice", &id);
    };
    let text = format!(
        "%PDF-1.4\n% fake-stripe invoice {} {} {}\n%%EOF\n",
        invoice.id,
        invoice.number.as_deref().unwrap_or_default(),
        invoice.status
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/pdf")],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(
            super::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

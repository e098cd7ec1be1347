//! OAuth apps: third-party applications that act for a user (issue 17).
//!
//! * An app is registered by a user, its owner, with exact redirect URIs and
//!   the scopes it may ask for ([`register`]); its secret is shown once.
//! * The authorize page ([`authorize`], rendered by the console) checks what
//!   an app asks; the user approves ([`approve`]) and a single-use code goes
//!   back to the app, bound to it, to the redirect URI and to the PKCE
//!   challenge; it lives [`crate::config::OAuthConfig::code_ttl_secs`].
//! * The app exchanges the code for an OAuth token ([`issue_token`]: a
//!   grant with the approved scopes and limits) or, in the keyless PKCE
//!   flow, for a plain API key with the approved spending limit
//!   ([`issue_key`]).
//! * With its token an app calls the open API (`api::oauth`): each route
//!   needs its scope ([`TokenCaller`]); charges go through [`charge`].

pub mod pkce;
pub mod redirect;
pub mod scopes;

use serde::Deserialize;
use store::{
    ChargeOutcome, CodeRefusal, Grant, NewApp, NewCharge, OAuthApp, OAuthCode, Redemption, User,
};

use crate::accounts::{check_length, key_row, KeyOptions, MAX_REMARK_CHARS};
use crate::config::GrantLimits;
use crate::error::ApiError;
use crate::money::MAX_AMOUNT_NANO;
use crate::secrets::{
    hash_secret, hashes_equal, new_client_id, new_client_secret, new_oauth_code, new_oauth_token,
    new_object_id, OAUTH_TOKEN_PREFIX,
};
use crate::state::App;
pub use scopes::Scope;

/// Longest app name, homepage and charge description.
pub const MAX_APP_NAME_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 256;
/// Longest `state` an app may send (it comes back verbatim).
const MAX_STATE_BYTES: usize = 1_024;
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// An error of the OAuth flow or of the open API, in OhMyGPT's envelope
/// (`errorType` is `kind`).
pub fn oauth_error(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::OAuth {
        status,
        kind,
        message: message.into(),
    }
}

fn invalid_request(message: impl Into<String>) -> ApiError {
    oauth_error(400, "invalid_request", message)
}

fn invalid_grant(message: impl Into<String>) -> ApiError {
    oauth_error(400, "invalid_grant", message)
}

/// The token was not accepted: discard it and ask the user again.
pub fn invalid_token() -> ApiError {
    oauth_error(
        401,
        "oauth_invalid_token_error",
        "Incorrect OAuth token provided. Please try to re-authenticate with the OAuth provider.",
    )
}

/// What a user registers (or changes) of an app.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppFields {
    pub name: Option<String>,
    pub homepage: Option<String>,
    /// Exact redirect URIs (none: the code is shown to the user instead).
    pub redirect_uris: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
}

fn checked_fields(fields: &AppFields) -> Result<store::AppUpdate, ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let name = fields.name.as_ref().map(|n| n.trim().to_string());
    if let Some(name) = &name {
        if name.is_empty() {
            return Err(bad("An app needs a name.".into()));
        }
        check_length("name", name, MAX_APP_NAME_CHARS)?;
    }
    let homepage = fields.homepage.as_ref().map(|h| h.trim().to_string());
    if let Some(homepage) = homepage.as_deref().filter(|h| !h.is_empty()) {
        check_length("homepage", homepage, redirect::MAX_URI_BYTES)?;
        let url = url::Url::parse(homepage)
            .map_err(|_| bad(format!("`homepage` is not a URL: {homepage}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("`homepage` must be an http(s) URL.".into()));
        }
    }
    if let Some(uris) = &fields.redirect_uris {
        if uris.len() > redirect::MAX_URIS {
            return Err(bad(format!(
                "An app registers at most {} redirect URIs.",
                redirect::MAX_URIS
            )));
        }
        for uri in uris {
            redirect::check_registered(uri).map_err(bad)?;
        }
    }
    let scopes = match &fields.scopes {
        Some(list) => {
            let parsed = scopes::parse_list(&list.join(" ")).map_err(bad)?;
            if parsed.is_empty() {
                return Err(bad("An app needs at least one scope.".into()));
            }
            Some(scopes::names(&parsed))
        }
        None => None,
    };
    Ok(store::AppUpdate {
        name,
        homepage,
        redirect_uris: fields.redirect_uris.clone(),
        scopes,
        secret_hash: None,
    })
}

/// Registers an app for `owner`; returns it with its secret (shown once).
pub async fn register(
    app: &App,
    owner: i64,
    fields: &AppFields,
) -> Result<(OAuthApp, String), ApiError> {
    if fields.name.is_none() {
        return Err(ApiError::BadRequest("An app needs a name.".into()));
    }
    let checked = checked_fields(fields)?;
    if app.store.count_apps(owner).await? >= app.config.oauth.max_apps_per_user {
        return Err(ApiError::Conflict(format!(
            "A user may register at most {} apps.",
            app.config.oauth.max_apps_per_user
        )));
    }
    let secret = new_client_secret();
    let new = NewApp {
        client_id: new_client_id(),
        owner_id: owner,
        name: checked.name.unwrap_or_default(),
        homepage: checked.homepage.unwrap_or_default(),
        redirect_uris: checked.redirect_uris.unwrap_or_default(),
        scopes: checked
            .scopes
            .unwrap_or_else(|| vec![Scope::UserInfo.as_str().to_string()]),
        secret_hash: hash_secret(&secret),
    };
    Ok((app.store.insert_app(&new).await?, secret))
}

/// Changes an owner's app.
pub async fn update(
    app: &App,
    owner: i64,
    client_id: &str,
    fields: &AppFields,
) -> Result<OAuthApp, ApiError> {
    let checked = checked_fields(fields)?;
    Ok(app.store.update_app(client_id, owner, &checked).await?)
}

/// Gives an owner's app a new secret (the old one stops at once).
pub async fn rotate_secret(
    app: &App,
    owner: i64,
    client_id: &str,
) -> Result<(OAuthApp, String), ApiError> {
    let secret = new_client_secret();
    let update = store::AppUpdate {
        secret_hash: Some(hash_secret(&secret)),
        ..store::AppUpdate::default()
    };
    let updated = app.store.update_app(client_id, owner, &update).await?;
    Ok((updated, secret))
}

/// Deletes an owner's app: its grants are revoked.
pub async fn delete(app: &App, owner: i64, client_id: &str) -> Result<(), ApiError> {
    app.store.delete_app(client_id, owner).await?;
    app.auth_cache.clear();
    Ok(())
}

/// Suspends or restores an app (the operator).
pub async fn suspend(app: &App, client_id: &str, suspended: bool) -> Result<OAuthApp, ApiError> {
    let updated = app.store.set_app_suspended(client_id, suspended).await?;
    app.auth_cache.clear();
    Ok(updated)
}

/// The authorize page's query, as OhMyGPT and RFC 6749 name it. Limits are
/// in credits (the unit of OhMyGPT's API).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeQuery {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub redirect_template: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub charge_limit: Option<String>,
    pub daily_limit: Option<String>,
    pub spend_limit: Option<String>,
}

/// A checked request for the user's approval.
#[derive(Debug, Clone)]
pub struct Consent {
    pub app: OAuthApp,
    /// `None`: the app has no callback; the code is shown to the user.
    pub redirect_uri: Option<String>,
    pub scopes: Vec<Scope>,
    pub state: String,
    pub template: Option<String>,
    pub challenge: Option<String>,
    /// What the app asked for: the user may approve less.
    pub limits: GrantLimits,
}

/// Checks what an app asks. Every refusal is shown to the user, never
/// sent to a redirect URI that may not be the app's.
pub async fn authorize(app: &App, query: &AuthorizeQuery) -> Result<Consent, ApiError> {
    let client_id = query
        .client_id
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid_request("client_id is required."))?;
    let registered = match app.store.app(client_id).await {
        Ok(a) => a,
        Err(store::StoreError::NotFound(_)) => {
            return Err(oauth_error(
                400,
                "invalid_client",
                "No app has this client_id.",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    if registered.is_suspended {
        return Err(oauth_error(
            403,
            "unauthorized_client",
            "This app is suspended.",
        ));
    }
    if query.response_type.as_deref().unwrap_or("code") != "code" {
        return Err(oauth_error(
            400,
            "unsupported_response_type",
            "response_type must be code.",
        ));
    }
    let redirect_uri = match query.redirect_uri.as_deref().filter(|u| !u.is_empty()) {
        // Exact match: OhMyGPT only compares the domain; a path or query
        // an attacker controls on the same domain must not get codes.
        Some(uri) if registered.redirect_uris.iter().any(|r| r == uri) => Some(uri.to_string()),
        Some(_) => {
            return Err(invalid_request(
                "redirect_uri is not one of the app's registered redirect URIs.",
            ))
        }
        None => match registered.redirect_uris.as_slice() {
            [] => None,
            [only] => Some(only.clone()),
            _ => {
                return Err(invalid_request(
                    "redirect_uri is required: the app registered several.",
                ))
            }
        },
    };
    let mut asked = scopes::parse_list(query.scope.as_deref().unwrap_or(""))
        .map_err(|e| oauth_error(400, "invalid_scope", e))?;
    if asked.is_empty() {
        asked.push(Scope::UserInfo);
    }
    let allowed = scopes::from_names(&registered.scopes);
    if let Some(extra) = asked.iter().find(|s| !allowed.contains(s)) {
        return Err(oauth_error(
            400,
            "invalid_scope",
            format!("The app did not register the scope `{extra}`."),
        ));
    }
    let state = query.state.clone().unwrap_or_default();
    if state.len() > MAX_STATE_BYTES {
        return Err(invalid_request("state is too long."));
    }
    let template = match query.redirect_template.as_deref().filter(|t| !t.is_empty()) {
        Some(encoded) => Some(redirect::decode_template(encoded).map_err(invalid_request)?),
        None => None,
    };
    let challenge = match query.code_challenge.as_deref().filter(|c| !c.is_empty()) {
        Some(challenge) => {
            pkce::check_challenge(challenge, query.code_challenge_method.as_deref())
                .map_err(invalid_request)?;
            Some(challenge.to_string())
        }
        None if query.code_challenge_method.is_some() => {
            return Err(invalid_request(
                "code_challenge_method was given without a code_challenge.",
            ))
        }
        None => None,
    };
    let defaults = app.config.oauth.default_limits();
    let limit = |given: &Option<String>, name: &str, default: i64| match given
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        Some(text) => credits(app, name, text),
        None => Ok(default),
    };
    let limits = GrantLimits {
        per_charge: limit(&query.charge_limit, "charge_limit", defaults.per_charge)?,
        per_day: limit(&query.daily_limit, "daily_limit", defaults.per_day)?,
        api_spend: limit(&query.spend_limit, "spend_limit", defaults.api_spend)?,
    };
    Ok(Consent {
        app: registered,
        redirect_uri,
        scopes: asked,
        state,
        template,
        challenge,
        limits,
    })
}

/// An amount in credits → nano-USD (non-negative, bounded).
pub fn credits(app: &App, name: &str, text: &str) -> Result<i64, ApiError> {
    crate::money::parse_amount(
        name,
        text.trim(),
        crate::money::Unit::Credits(app.config.credits_per_usd),
        false,
    )
    .map_err(|e| invalid_request(e.to_string()))
}

/// The user approved `consent` with `limits` (each at most what the app
/// asked): a code is made; returns where to send the browser.
pub async fn approve(
    app: &App,
    user_id: i64,
    consent: &Consent,
    limits: GrantLimits,
) -> Result<String, ApiError> {
    let code = new_oauth_code();
    let now = store::now_ms();
    let ttl_ms =
        i64::try_from(app.config.oauth.code_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    app.store
        .insert_code(&OAuthCode {
            code_hash: hash_secret(&code),
            app_id: consent.app.id,
            user_id,
            redirect_uri: consent.redirect_uri.clone().unwrap_or_default(),
            scopes: scopes::names(&consent.scopes),
            code_challenge: consent.challenge.clone(),
            charge_limit: limits.per_charge.min(consent.limits.per_charge).max(0),
            daily_limit: limits.per_day.min(consent.limits.per_day).max(0),
            spend_limit: limits.api_spend.min(consent.limits.api_spend).max(0),
            created_at: now,
            expires_at: now.saturating_add(ttl_ms),
            used_at: None,
        })
        .await?;
    Ok(match &consent.redirect_uri {
        Some(uri) => redirect::callback(uri, consent.template.as_deref(), &code, &consent.state),
        None => redirect::with_query(
            crate::api::oauth::SUCCEED_PAGE,
            &[("code", &code), ("state", &consent.state)],
        ),
    })
}

/// A code exchange (`issue-token`, or the keyless `auth/keys`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Exchange {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub code_verifier: Option<String>,
    pub code_challenge_method: Option<String>,
    pub redirect_uri: Option<String>,
    pub code: Option<String>,
}

/// An OAuth token, issued for a code.
pub struct IssuedToken {
    pub token: String,
    pub user_id: i64,
    pub client_id: String,
}

/// A plain API key, made for a code (the keyless flow).
pub struct IssuedKey {
    pub secret: String,
    pub user_id: i64,
    pub app_name: String,
}

/// A code whose client proved itself, ready to be redeemed.
struct Verified {
    code_hash: String,
    code: OAuthCode,
    app: OAuthApp,
}

/// Checks a code exchange: the client proves itself with its secret or
/// (when the code has a PKCE challenge) its verifier. `as_key`: the
/// keyless flow (OpenRouter's), PKCE only, no client id needed.
async fn verify(app: &App, request: &Exchange, as_key: bool) -> Result<Verified, ApiError> {
    let code = request
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid_request("code is required."))?;
    let code_hash = hash_secret(code);
    let Some(found) = app.store.code(&code_hash).await? else {
        return Err(invalid_grant("The code is not valid."));
    };
    let registered = app.store.app_by_id(found.app_id).await?;
    match request.client_id.as_deref().filter(|c| !c.is_empty()) {
        Some(client_id) if client_id != registered.client_id => {
            return Err(invalid_grant("The code was issued to another client."))
        }
        Some(_) => {}
        None if as_key => {}
        None => return Err(invalid_request("client_id is required.")),
    }
    if registered.is_suspended {
        return Err(oauth_error(
            403,
            "unauthorized_client",
            "This app is suspended.",
        ));
    }
    // A secret, when given, must be right, whatever else is given.
    let secret_ok = match request.client_secret.as_deref().filter(|s| !s.is_empty()) {
        Some(secret) => {
            if !hashes_equal(&hash_secret(secret), &registered.secret_hash) {
                return Err(oauth_error(
                    401,
                    "invalid_client",
                    "The client secret is wrong.",
                ));
            }
            true
        }
        None => false,
    };
    match (&found.code_challenge, request.code_verifier.as_deref()) {
        (Some(challenge), Some(verifier)) => {
            if let Some(method) = request.code_challenge_method.as_deref() {
                if method != "S256" {
                    return Err(invalid_request("code_challenge_method must be S256."));
                }
            }
            if !pkce::verifies(verifier, challenge) {
                return Err(invalid_grant("The code_verifier does not match the challenge."));
            }
        }
        (Some(_), None) => {
            return Err(invalid_request(
                "code_verifier is required: the code was issued with a PKCE challenge.",
            ))
        }
        (None, _) if as_key => {
            return Err(invalid_request(
                "This flow needs a code issued with a PKCE challenge (S256).",
            ))
        }
        (None, _) if !secret_ok => {
            return Err(oauth_error(
                401,
                "invalid_client",
                "client_secret is required (or PKCE: a code_challenge when authorizing and its code_verifier now).",
            ))
        }
        (None, _) => {}
    }
    if let Some(uri) = request.redirect_uri.as_deref().filter(|u| !u.is_empty()) {
        if uri != found.redirect_uri {
            return Err(invalid_grant(
                "redirect_uri differs from the one authorized.",
            ));
        }
    }
    Ok(Verified {
        code_hash,
        code: found,
        app: registered,
    })
}

/// The key a redeemed code makes for its user: labelled with the app,
/// limited to the spending the user approved.
fn app_key(verified: &Verified, secret: &str) -> store::NewKey {
    let label = format!("{} (OAuth app)", verified.app.name);
    let options = KeyOptions {
        remark: label.chars().take(MAX_REMARK_CHARS).collect(),
        max_fee: verified.code.spend_limit,
        ..KeyOptions::default()
    };
    key_row(verified.code.user_id, secret, options)
}

/// Exchanges a code for an OAuth token (`issue-token`); with the `api`
/// scope the token is also an API key of the user.
pub async fn issue_token(app: &App, request: &Exchange) -> Result<IssuedToken, ApiError> {
    let verified = verify(app, request, false).await?;
    let token = new_oauth_token();
    let scopes = scopes::from_names(&verified.code.scopes);
    // No spending approved, no API access (a key's 0 means unlimited).
    let key = (scopes.contains(&Scope::Api) && verified.code.spend_limit > 0)
        .then(|| app_key(&verified, &token));
    let redemption = Redemption::Token {
        grant_id: new_object_id("grant"),
        token_hash: hash_secret(&token),
        token_last4: token[token.len() - 4..].to_string(),
        key,
    };
    redeem(app, &verified, &redemption).await?;
    Ok(IssuedToken {
        token,
        user_id: verified.code.user_id,
        client_id: verified.app.client_id,
    })
}

/// Exchanges a code for a plain API key of the user (OpenRouter's keyless
/// PKCE flow): it needs the `api` scope and some approved spending.
pub async fn issue_key(app: &App, request: &Exchange) -> Result<IssuedKey, ApiError> {
    let verified = verify(app, request, true).await?;
    if !scopes::from_names(&verified.code.scopes).contains(&Scope::Api) {
        return Err(oauth_error(
            400,
            "invalid_scope",
            "An API key needs the `api` scope.",
        ));
    }
    if verified.code.spend_limit <= 0 {
        return Err(invalid_request(
            "The user approved no spending: an API key would be useless.",
        ));
    }
    let secret = crate::secrets::new_api_key();
    let redemption = Redemption::Key(app_key(&verified, &secret));
    redeem(app, &verified, &redemption).await?;
    Ok(IssuedKey {
        secret,
        user_id: verified.code.user_id,
        app_name: verified.app.name,
    })
}

/// Redeems a verified code, once.
async fn redeem(app: &App, verified: &Verified, redemption: &Redemption) -> Result<(), ApiError> {
    let redeemed = app
        .store
        .redeem_code(
            &verified.code_hash,
            verified.app.id,
            redemption,
            app.config.max_keys_per_user,
        )
        .await?;
    match redeemed {
        Ok(_) => Ok(()),
        Err(CodeRefusal::Reused) => {
            app.auth_cache.clear();
            Err(invalid_grant(
                "The code was already used: what it was exchanged for is revoked.",
            ))
        }
        Err(CodeRefusal::Expired) => Err(invalid_grant("The code has expired.")),
        Err(CodeRefusal::OtherClient) => {
            Err(invalid_grant("The code was issued to another client."))
        }
        Err(CodeRefusal::Unknown) => Err(invalid_grant("The code is not valid.")),
    }
}

/// The model routes an OAuth token with the `api` scope may call (below
/// an agent mount too).
const MODEL_ROUTES: [&str; 14] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/complete",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/images/variations",
    "/v1/moderations",
];

/// Whether an OAuth token may be presented on this route: the open API,
/// the model calls and the model list — nothing that reads or manages the
/// user's stored data.
pub fn token_may_call(method: &axum::http::Method, path: &str) -> bool {
    if path.starts_with("/api/v1/user/oauth/app/") {
        return true;
    }
    let path = crate::api::AGENT_MOUNTS
        .iter()
        .find_map(|mount| path.strip_prefix(mount))
        .unwrap_or(path);
    match *method {
        axum::http::Method::POST => MODEL_ROUTES.contains(&path),
        axum::http::Method::GET => matches!(path, "/v1/models" | "/models"),
        _ => false,
    }
}

/// An app calling with an OAuth token: its grant, app and user.
#[derive(Debug, Clone)]
pub struct TokenCaller {
    pub grant: Grant,
    pub app: OAuthApp,
    pub user: User,
}

/// Authenticates an OAuth token and checks it holds `scope`.
pub async fn token_caller(
    app: &App,
    headers: &axum::http::HeaderMap,
    scope: Scope,
) -> Result<TokenCaller, ApiError> {
    let token = crate::auth::presented_secret(headers)
        .filter(|t| t.starts_with(OAUTH_TOKEN_PREFIX))
        .ok_or_else(invalid_token)?;
    let Some((grant, registered)) = app.store.grant_by_token(&hash_secret(token)).await? else {
        return Err(invalid_token());
    };
    if registered.is_suspended {
        return Err(oauth_error(
            403,
            "oauth_app_suspended_error",
            "This app is suspended by the operator.",
        ));
    }
    if !scopes::from_names(&grant.scopes).contains(&scope) {
        return Err(oauth_error(
            403,
            "oauth_scope_error",
            format!("The user did not grant this app the `{scope}` scope."),
        ));
    }
    let user = app.store.get_user(grant.user_id).await?;
    Ok(TokenCaller {
        grant,
        app: registered,
        user,
    })
}

/// A charge an app asks for.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub amount: i64,
    pub idempotency_key: String,
    pub description: String,
}

/// Charges the caller's user: exactly once per idempotency key, within the
/// approved limits and the paid balance, the owner credited less the
/// platform's fee. Returns the outcome of the store.
pub async fn charge(
    app: &App,
    caller: &TokenCaller,
    request: &ChargeRequest,
) -> Result<ChargeOutcome, ApiError> {
    if request.amount <= 0 || request.amount > MAX_AMOUNT_NANO {
        return Err(invalid_request("amount must be positive."));
    }
    let key = request.idempotency_key.trim();
    if key.is_empty() {
        return Err(invalid_request(
            "idempotency_key is required (a charge is made once per key).",
        ));
    }
    check_length("idempotency_key", key, MAX_IDEMPOTENCY_KEY_CHARS)?;
    let description = request.description.trim();
    if description.is_empty() {
        return Err(invalid_request("description is required."));
    }
    check_length("description", description, MAX_DESCRIPTION_CHARS)?;
    // A retry of a charge already made answers with it, before anything
    // else can refuse it (the balance it took, the hold below).
    if let Some(earlier) = app
        .store
        .charge_by_key(caller.app.id, caller.user.id, key)
        .await?
    {
        return Ok(store::replay(earlier, request.amount));
    }
    let new = NewCharge {
        grant_id: caller.grant.id.clone(),
        idempotency_key: key.to_string(),
        amount: request.amount,
        fee: app.config.oauth.fee_of(request.amount),
        description: description.to_string(),
        app_label: format!("app {} ({})", caller.app.name, caller.app.client_id),
    };
    // This instance's requests in flight may hold part of the balance in
    // memory, where the database cannot see it: hold the charge there too
    // while it is written.
    let ledger = &app.billing.ledger;
    let in_memory = app.billing.enabled && app.billing.holds != crate::config::HoldsMode::Database;
    if in_memory && !ledger.hold_user(&caller.user, request.amount) {
        return Ok(ChargeOutcome::Insufficient);
    }
    let outcome = app.store.oauth_charge(&new).await;
    if in_memory {
        let spent = match &outcome {
            Ok(ChargeOutcome::Charged { .. }) => request.amount,
            _ => 0,
        };
        ledger.release_user_hold(caller.user.id, request.amount, spent);
    }
    let outcome = outcome?;
    if let ChargeOutcome::Charged { charge, .. } = &outcome {
        // The owner's balance grew: their next request reads it afresh.
        ledger.forget_user(charge.owner_id);
    }
    Ok(outcome)
}

/// Revokes a grant of `user_id`; its token and API key stop at once.
pub async fn revoke(app: &App, grant_id: &str, user_id: i64) -> Result<(), ApiError> {
    app.store.revoke_grant(grant_id, user_id).await?;
    app.auth_cache.clear();
    Ok(())
}

/// Replaces the user's management key; returns the new key and its secret.
pub async fn rotate_management_key(
    app: &App,
    user_id: i64,
) -> Result<(store::ApiKey, String), ApiError> {
    let secret = crate::secrets::new_api_key();
    let options = KeyOptions {
        remark: "management key".into(),
        is_admin: true,
        ..KeyOptions::default()
    };
    let new = key_row(user_id, &secret, options);
    let key = app.store.rotate_management_key(user_id, &new).await?;
    app.auth_cache.clear();
    Ok((key, secret))
}

#[cfg(test)]
mod tests {
    use super::token_may_call;
    use axum::http::Method;

    #[test]
    fn tokens_reach_the_models_and_the_open_api_only() {
        assert!(token_may_call(&Method::POST, "/v1/chat/completions"));
        assert!(token_may_call(
            &Method::POST,
            "/api/v1/ai/openai/cc-omg/v1/messages"
        ));
        assert!(token_may_call(&Method::GET, "/v1/models"));
        assert!(token_may_call(
            &Method::POST,
            "/api/v1/user/oauth/app/charge-user-fees"
        ));
        for (method, path) in [
            (Method::GET, "/v1/chat/completions"),
            (Method::GET, "/v1/responses/resp_1"),
            (Method::POST, "/v1/conversations"),
            (Method::GET, "/v1/usage"),
            (Method::POST, "/api/v1/user/admin/balance"),
            (Method::POST, "/api/v1/user/files/upload"),
            (Method::POST, "/api/v1/user/oauth/apps/create"),
        ] {
            assert!(!token_may_call(&method, path), "{method} {path}");
        }
    }
}

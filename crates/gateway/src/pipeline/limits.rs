//! Step 2: rate limits. The request is counted, all at once or not at all,
//! in every scope that limits it: its key and its user (limits set on
//! them), and those of the configuration (`[rate_limits]`: the gateway,
//! the model, the user's group and membership tier); a refusal is a 429
//! with `retry-after`, and an admitted request's tightest limits are told
//! to the client in OpenAI's `x-ratelimit-*` headers (and Anthropic's
//! `anthropic-ratelimit-*` on its routes). Tokens are taken as estimated
//! and corrected at settlement ([`settle`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};
use protocol::TokenUsage;

use crate::auth::Principal;
use crate::config::{OnRedisFailure, RateLimits};
use crate::error::{ApiError, Shape};
use crate::limits::refusals::KeyRefusals;
use crate::limits::{
    Admission, Check, Headroom, LimitKind, Limits, Refusal, ScopeKind, ScopeStatus,
};
use crate::shared::{Shared, Ticket};
use crate::state::App;

/// The scopes `principal`'s request for `model` is counted in, the most
/// particular first (when several refuse, the first is the one named): the
/// key, the user, the user's group and membership tier, the model, the
/// gateway. Without a model, none of the model's.
pub fn checks(
    config: &RateLimits,
    principal: &Principal,
    model: Option<&str>,
    now_ms: i64,
) -> Vec<Check> {
    let user = &principal.user;
    let mut checks = Vec::new();
    // Scope names are built only for limits that are set: a gateway
    // without limits spends nothing here.
    let mut add = |limits: Option<&Limits>, scope: &dyn Fn() -> String| {
        if let Some(limits) = limits.filter(|l| l.is_set()) {
            checks.push(Check {
                scope: scope(),
                limits: *limits,
            });
        }
    };
    let key = Limits::from_stored(&principal.key.limits);
    add(Some(&key), &|| format!("key:{}", principal.key.id));
    add(Some(&Limits::from_stored(&user.limits)), &|| {
        format!("user:{}", user.id)
    });
    add(config.groups.get(&user.group_name), &|| {
        format!("group:{}:user:{}", user.group_name, user.id)
    });
    let member = !matches!(user.membership_expires_at, Some(at) if at <= now_ms);
    if member && !user.tier.is_empty() {
        add(config.tiers.get(&user.tier), &|| {
            format!("tier:{}:user:{}", user.tier, user.id)
        });
    }
    if let Some(model) = model {
        add(config.models.get(model), &|| format!("model:{model}"));
    }
    add(Some(&config.global()), &|| "global".into());
    checks
}

/// `principal`'s limits (with `model`'s, when named) and what is left of
/// them now, taking nothing: where they are counted (Redis, when shared).
/// Redis away: refused, or this instance's own figures, as requests are.
pub async fn peek(
    app: &App,
    principal: &Principal,
    model: Option<&str>,
) -> Result<Vec<ScopeStatus>, ApiError> {
    let checks = checks(&app.config.rate_limits, principal, model, store::now_ms());
    if let Some(shared) = &app.shared {
        match shared.peek(&checks).await {
            Ok(statuses) => return Ok(statuses),
            Err(_) if shared.on_failure == OnRedisFailure::Local => {}
            Err(_) => return Err(ApiError::LimitsUnavailable),
        }
    }
    Ok(app.limiter.peek(&checks, Instant::now()))
}

/// What a request took of its rate limits: on this instance, or in Redis.
pub enum Taken {
    Local(Admission),
    Shared(Arc<Shared>, Ticket),
}

impl Taken {
    fn headroom(&self) -> [(&'static HeaderNames, Option<Headroom>); 2] {
        let (requests, tokens) = match self {
            Taken::Local(admission) => (admission.requests, admission.tokens),
            Taken::Shared(_, ticket) => (ticket.requests, ticket.tokens),
        };
        [(&REQUESTS_NAMES, requests), (&TOKENS_NAMES, tokens)]
    }
}

/// Counts the request in `checks` on this instance, estimated at `tokens`;
/// `None` when no limit applies to it.
pub fn admit_local(
    app: &App,
    principal: &Principal,
    checks: Vec<Check>,
    tokens: u64,
) -> Result<Option<Taken>, ApiError> {
    if checks.is_empty() {
        return Ok(None);
    }
    app.limiter
        .admit(checks, tokens, Instant::now())
        .map(|admission| Some(Taken::Local(admission)))
        .map_err(|refusal| refused(app, principal, refusal, false))
}

/// The 429 for a refusal, counted (by kind, and for the key refused).
/// `in_redis`: refused by the shared counts, not this instance's own.
pub fn refused(app: &App, principal: &Principal, refusal: Refusal, in_redis: bool) -> ApiError {
    let kind = match refusal.kind {
        LimitKind::Requests => "requests",
        LimitKind::Tokens => "tokens",
        LimitKind::Concurrency => "concurrency",
    };
    app.metrics.record_rate_limited(kind);
    let counted = KeyRefusals::one(
        &principal.key.id,
        principal.user.id,
        ScopeKind::of(&refusal.scope),
        refusal.kind,
        store::now_ms(),
    );
    match &app.shared {
        // Shared by the instances; this one's own count when Redis is away.
        Some(shared) if in_redis => {
            let shared = shared.clone();
            tokio::spawn(async move { shared.record_refusal(&counted).await });
        }
        _ => app.rate_refusals.add(&counted),
    }
    ApiError::RateLimited {
        what: describe(&refusal.scope, refusal.kind),
        retry_after_secs: refusal
            .retry_after
            .map(|wait| wait.as_millis().div_ceil(1000).max(1) as u64),
    }
}

/// The limit a client was refused by, in words.
fn describe(scope: &str, kind: LimitKind) -> String {
    let what = match kind {
        LimitKind::Requests => "requests per minute",
        LimitKind::Tokens => "tokens per minute",
        LimitKind::Concurrency => "concurrent requests",
    };
    let whose = match ScopeKind::of(scope) {
        // A model's name may hold colons itself: all after the first.
        ScopeKind::Model => format!(
            "of the model `{}`",
            scope.split_once(':').map_or("", |(_, model)| model)
        ),
        ScopeKind::Key => "of your API key".to_string(),
        ScopeKind::User => "of your account".to_string(),
        ScopeKind::Group => "of your group".to_string(),
        ScopeKind::Tier => "of your membership tier".to_string(),
        ScopeKind::Global => "of the gateway".to_string(),
    };
    format!("{what} {whose}")
}

/// The request is done: its tokens corrected to what was used, its leases
/// returned — in Redis by a task of its own, returned here so that a caller
/// may wait for it before the client sees its answer end (a client sending
/// its next request at once must find its lease returned).
pub fn settle(
    app: &App,
    taken: Option<Taken>,
    used: &TokenUsage,
) -> Option<tokio::task::JoinHandle<()>> {
    // `input` already counts cache reads and writes.
    let total = used.total();
    match taken {
        None => None,
        Some(Taken::Local(admission)) => {
            app.limiter.settle(admission, total, Instant::now());
            None
        }
        // Settling can run in a drop, outside any task: without a runtime
        // the leases expire by themselves.
        Some(Taken::Shared(shared, ticket)) => {
            if !ticket.gives_back() {
                return None;
            }
            let leased = ticket.leased();
            let returning = tokio::runtime::Handle::try_current()
                .ok()?
                .spawn(async move { shared.settle(ticket, total).await });
            // Only a lease is worth the client's wait: tokens given back a
            // moment later change nothing it could notice.
            leased.then_some(returning)
        }
    }
}

/// The headers telling the client its tightest limits after this request,
/// and `x-tollgate-limits: local` when they were counted on this instance
/// alone because Redis could not be reached.
pub fn headers(taken: Option<&Taken>, local: bool, shape: Shape) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if local {
        out.push((
            HeaderName::from_static("x-tollgate-limits"),
            HeaderValue::from_static("local"),
        ));
    }
    let Some(taken) = taken else {
        return out;
    };

    // Names are constants and numbers are written without parsing: these
    // headers go out with every limited answer.
    for (names, room) in taken.headroom() {
        let Some(Headroom {
            limit,
            remaining,
            reset,
        }) = room
        else {
            continue;
        };
        out.push((names.limit.clone(), limit.into()));
        out.push((names.remaining.clone(), remaining.into()));
        out.push((names.reset.clone(), text(openai_duration(reset))));
        if shape == Shape::Anthropic {
            let at = store::now_ms().saturating_add(reset.as_millis() as i64);
            out.push((names.anthropic_limit.clone(), limit.into()));
            out.push((names.anthropic_remaining.clone(), remaining.into()));
            out.push((
                names.anthropic_reset.clone(),
                text(crate::time::format_ms(at)),
            ));
        }
    }
    out
}

/// A header value of text known to be plain ASCII, without copying it.
fn text(value: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
        .unwrap_or(HeaderValue::from_static(""))
}

/// The headers telling one kind of limit.
struct HeaderNames {
    limit: HeaderName,
    remaining: HeaderName,
    reset: HeaderName,
    anthropic_limit: HeaderName,
    anthropic_remaining: HeaderName,
    anthropic_reset: HeaderName,
}

static REQUESTS_NAMES: HeaderNames = HeaderNames {
    limit: HeaderName::from_static("x-ratelimit-limit-requests"),
    remaining: HeaderName::from_static("x-ratelimit-remaining-requests"),
    reset: HeaderName::from_static("x-ratelimit-reset-requests"),
    anthropic_limit: HeaderName::from_static("anthropic-ratelimit-requests-limit"),
    anthropic_remaining: HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
    anthropic_reset: HeaderName::from_static("anthropic-ratelimit-requests-reset"),
};

static TOKENS_NAMES: HeaderNames = HeaderNames {
    limit: HeaderName::from_static("x-ratelimit-limit-tokens"),
    remaining: HeaderName::from_static("x-ratelimit-remaining-tokens"),
    reset: HeaderName::from_static("x-ratelimit-reset-tokens"),
    anthropic_limit: HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
    anthropic_remaining: HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
    anthropic_reset: HeaderName::from_static("anthropic-ratelimit-tokens-reset"),
};

/// A duration as OpenAI writes its resets: `1s`, `6m0s`, `120ms`.
fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1_000);
    match (secs / 3_600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(key: store::RateLimits, user: store::RateLimits) -> Principal {
        Principal {
            key: store::ApiKey {
                id: "key_a".into(),
                user_id: 7,
                key_prefix: "sk-abcd".into(),
                key_last4: "wxyz".into(),
                remark: String::new(),
                is_admin: false,
                is_disabled: false,
                permissions: vec![],
                max_fee: 0,
                used_fee: 0,
                held: 0,
                limits: key,
                revision: 0,
                used_times: 0,
                created_at: 0,
                used_at: None,
                expired_at: None,
                grant_id: None,
            },
            user: store::User {
                id: 7,
                name: "u".into(),
                group_name: "vip".into(),
                tier: "free".into(),
                membership_expires_at: None,
                balance: 0,
                free_balance: 0,
                held: 0,
                limits: user,
                revision: 0,
                created_at: 0,
            },
        }
    }

    #[test]
    fn keys_and_users_are_scopes_of_their_own_checked_first() {
        let none = store::RateLimits::default();
        let config = RateLimits::default();
        // Nothing set: nothing allocated (the hot path of most gateways).
        let empty = checks(&config, &principal(none, none), Some("m"), 0);
        assert_eq!(empty.capacity(), 0);

        let key = store::RateLimits {
            rpm: Some(60),
            ..none
        };
        let user = store::RateLimits {
            concurrency: Some(3),
            ..none
        };
        let mut config = RateLimits {
            rpm: Some(10_000),
            ..RateLimits::default()
        };
        config.groups.insert(
            "vip".into(),
            Limits {
                rpm: Some(120),
                ..Limits::default()
            },
        );
        config.models.insert(
            "m".into(),
            Limits {
                tpm: Some(1_000),
                ..Limits::default()
            },
        );
        let scopes: Vec<(String, Limits)> = checks(&config, &principal(key, user), Some("m"), 0)
            .into_iter()
            .map(|c| (c.scope, c.limits))
            .collect();
        let names: Vec<&str> = scopes.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "key:key_a",
                "user:7",
                "group:vip:user:7",
                "model:m",
                "global"
            ]
        );
        assert_eq!(scopes[0].1.rpm, Some(60));
        assert_eq!(scopes[1].1.concurrency, Some(3));
        // Without a model, the model's scope is left out.
        assert_eq!(checks(&config, &principal(key, user), None, 0).len(), 4);
    }

    #[test]
    fn resets_read_as_openai_writes_them() {
        assert_eq!(openai_duration(Duration::from_millis(120)), "120ms");
        assert_eq!(openai_duration(Duration::from_millis(1_000)), "1s");
        assert_eq!(openai_duration(Duration::from_millis(1_001)), "2s");
        assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(openai_duration(Duration::from_secs(3_661)), "1h1m1s");
    }

    #[test]
    fn refusals_say_which_limit() {
        assert_eq!(
            describe("model:gpt-4o", LimitKind::Requests),
            "requests per minute of the model `gpt-4o`"
        );
        assert_eq!(
            describe("tier:vip:user:3", LimitKind::Tokens),
            "tokens per minute of your membership tier"
        );
        assert_eq!(
            describe("global", LimitKind::Concurrency),
            "concurrent requests of the gateway"
        );
        assert_eq!(
            describe("key:key_abc", LimitKind::Requests),
            "requests per minute of your API key"
        );
        assert_eq!(
            describe("user:7", LimitKind::Concurrency),
            "concurrent requests of your account"
        );
        assert_eq!(
            describe("model:ft:gpt-4o:acme", LimitKind::Requests),
            "requests per minute of the model `ft:gpt-4o:acme`"
        );
    }
}

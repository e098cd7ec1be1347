//! What the in-memory rate limiter costs a request, alone: admitting it in
//! the scopes a typical limited gateway counts (the gateway's, with
//! requests, tokens and concurrency; the user's group's, requests only),
//! settling it, and the `x-ratelimit-*` headers of its answer. Run by hand:
//! `cargo bench -p gateway --bench limits`.

use std::time::{Duration, Instant};

use gateway::error::Shape;
use gateway::limits::{Check, Limiter, Limits};

fn main() {
    let limiter = Limiter::new(Duration::from_secs(3_600));
    let global = Limits {
        rpm: Some(100_000_000),
        tpm: Some(100_000_000_000),
        concurrency: Some(100_000),
    };
    let group = Limits {
        rpm: Some(100_000_000),
        ..Limits::default()
    };
    let users = 1_000;
    let rounds = 1_000_000;
    for (name, with_headers) in [("admit + settle", false), ("+ headers", true)] {
        let started = Instant::now();
        for i in 0..rounds {
            let checks = vec![
                Check {
                    scope: format!("group:default:user:{}", i % users),
                    limits: group,
                },
                Check {
                    scope: "global".into(),
                    limits: global,
                },
            ];
            let now = Instant::now();
            let admission = limiter.admit(checks, 300, now).expect("admitted");
            if with_headers {
                let taken = gateway::pipeline::limits::Taken::Local(admission);
                let headers =
                    gateway::pipeline::limits::headers(Some(&taken), false, Shape::OpenAi);
                std::hint::black_box(headers);
                let gateway::pipeline::limits::Taken::Local(admission) = taken else {
                    unreachable!()
                };
                limiter.settle(admission, 20, now);
            } else {
                limiter.settle(admission, 20, now);
            }
        }
        let per = started.elapsed().as_nanos() / rounds as u128;
        println!("{name}: {per} ns per request");
    }
}

//! Holds and settlement on a real database (SQLite, or PostgreSQL when
//! `TOLLGATE_TEST_POSTGRES_URL` is set): exactly-once charging and no
//! oversubscription under concurrency.

use store::{
    BalanceChange, NewKey, NewUser, Reservation, ReserveOutcome, SettleOutcome, Settlement, Store,
};

async fn store_with_user(balance: i64, max_fee: i64) -> (Store, i64, String) {
    let store = Store::connect(&store::testing::fresh_database_url().await)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    // Migrating twice is a no-op.
    store.migrate().await.unwrap();
    let user = store
        .create_user(&NewUser {
            name: "u".into(),
            group_name: "default".into(),
            tier: "free".into(),
            membership_expires_at: None,
            limits: Default::default(),
        })
        .await
        .unwrap();
    if balance > 0 {
        store
            .change_balance(&BalanceChange {
                user_id: user.id,
                amount: balance,
                free: false,
                reason: "seed".into(),
            })
            .await
            .unwrap();
    }
    let key = NewKey {
        id: "key_test".into(),
        user_id: user.id,
        key_hash: "hash".into(),
        key_prefix: "sk-abcd".into(),
        key_last4: "wxyz".into(),
        remark: String::new(),
        is_admin: false,
        permissions: vec![],
        max_fee,
        expired_at: None,
        limits: Default::default(),
    };
    store.insert_key(&key, 10).await.unwrap();
    (store, user.id, key.id)
}

fn hold(request_id: &str, user_id: i64, key_id: &str, amount: i64, expires_at: i64) -> Reservation {
    Reservation {
        request_id: request_id.into(),
        user_id,
        key_id: key_id.into(),
        amount,
        expires_at,
    }
}

fn settlement(request_id: &str, user_id: i64, key_id: &str, cost: i64) -> Settlement {
    Settlement {
        request_id: request_id.into(),
        user_id,
        key_id: key_id.into(),
        endpoint: "chat.completions".into(),
        model: "m".into(),
        provider: "p".into(),
        upstream_model: "m".into(),
        status: 200,
        cost,
        ..Default::default()
    }
}

#[tokio::test]
async fn settling_twice_charges_once() {
    let (store, user, key) = store_with_user(1_000, 0).await;
    let far = store::now_ms() + 60_000;
    assert_eq!(
        store
            .reserve(&hold("r1", user, &key, 600, far))
            .await
            .unwrap(),
        ReserveOutcome::Held
    );
    assert_eq!(store.get_user(user).await.unwrap().held, 600);
    let s = settlement("r1", user, &key, 250);
    assert_eq!(store.settle(&s).await.unwrap(), SettleOutcome::Charged);
    assert_eq!(
        store.settle(&s).await.unwrap(),
        SettleOutcome::AlreadySettled
    );
    let u = store.get_user(user).await.unwrap();
    assert_eq!((u.balance, u.held), (750, 0));
    let k = store.get_key(&key).await.unwrap();
    assert_eq!((k.used_fee, k.held, k.used_times), (250, 0, 1));
    let ledger = store.ledger(user, 10).await.unwrap();
    assert_eq!(ledger[0].amount, -250);
    assert_eq!(ledger[0].request_id.as_deref(), Some("r1"));
    store.close().await;
}

#[tokio::test]
async fn concurrent_holds_never_exceed_the_balance() {
    // Room for exactly 10 holds of 100.
    let (store, user, key) = store_with_user(1_000, 0).await;
    let far = store::now_ms() + 60_000;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move {
                store
                    .reserve(&hold(&format!("r{i}"), user, &key, 100, far))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut held = 0;
    for t in tasks {
        if t.await.unwrap() == ReserveOutcome::Held {
            held += 1;
        }
    }
    assert_eq!(held, 10);
    assert_eq!(store.get_user(user).await.unwrap().held, 1_000);
    store.close().await;
}

#[tokio::test]
async fn key_limit_counts_spent_and_held() {
    let (store, user, key) = store_with_user(1_000_000, 500).await;
    let far = store::now_ms() + 60_000;
    assert_eq!(
        store
            .reserve(&hold("a", user, &key, 300, far))
            .await
            .unwrap(),
        ReserveOutcome::Held
    );
    assert_eq!(
        store
            .reserve(&hold("b", user, &key, 300, far))
            .await
            .unwrap(),
        ReserveOutcome::KeyLimitReached
    );
    // The refused hold left nothing behind on the user either.
    assert_eq!(store.get_user(user).await.unwrap().held, 300);
    store
        .settle(&settlement("a", user, &key, 450))
        .await
        .unwrap();
    assert_eq!(
        store
            .reserve(&hold("c", user, &key, 100, far))
            .await
            .unwrap(),
        ReserveOutcome::KeyLimitReached
    );
    assert_eq!(
        store
            .reserve(&hold("d", user, &key, 50, far))
            .await
            .unwrap(),
        ReserveOutcome::Held
    );
    store.close().await;
}

#[tokio::test]
async fn expired_holds_are_swept_and_late_settlement_still_charges_once() {
    let (store, user, key) = store_with_user(1_000, 0).await;
    let past = store::now_ms() - 1;
    store
        .reserve(&hold("dead", user, &key, 400, past))
        .await
        .unwrap();
    assert_eq!(store.sweep_expired_holds().await.unwrap(), 1);
    let u = store.get_user(user).await.unwrap();
    assert_eq!((u.balance, u.held), (1_000, 0));
    // A settlement arriving after the sweep charges, and releases nothing twice.
    store
        .settle(&settlement("dead", user, &key, 100))
        .await
        .unwrap();
    let u = store.get_user(user).await.unwrap();
    assert_eq!((u.balance, u.held), (900, 0));
    assert_eq!(store.get_key(&key).await.unwrap().held, 0);
    store.close().await;
}

#[tokio::test]
async fn free_balance_is_spent_first() {
    let (store, user, key) = store_with_user(1_000, 0).await;
    store
        .change_balance(&BalanceChange {
            user_id: user,
            amount: 300,
            free: true,
            reason: "promo".into(),
        })
        .await
        .unwrap();
    store
        .settle(&settlement("x", user, &key, 500))
        .await
        .unwrap();
    let u = store.get_user(user).await.unwrap();
    assert_eq!((u.free_balance, u.balance), (0, 800));
    store
        .settle(&settlement("y", user, &key, 100))
        .await
        .unwrap();
    assert_eq!(store.get_user(user).await.unwrap().balance, 700);
    store.close().await;
}

#[tokio::test]
async fn debits_cannot_overdraw_and_unknown_users_are_not_found() {
    let (store, user, _) = store_with_user(100, 0).await;
    let overdraw = BalanceChange {
        user_id: user,
        amount: -101,
        free: false,
        reason: "x".into(),
    };
    assert!(matches!(
        store.change_balance(&overdraw).await,
        Err(store::StoreError::InsufficientBalance)
    ));
    let ghost = BalanceChange {
        user_id: 9_999,
        amount: 1,
        free: false,
        reason: "x".into(),
    };
    assert!(matches!(
        store.change_balance(&ghost).await,
        Err(store::StoreError::NotFound(_))
    ));
    assert_eq!(store.get_user(user).await.unwrap().balance, 100);
    store.close().await;
}

#[tokio::test]
async fn a_batch_charges_each_request_once_with_a_consistent_ledger() {
    let (store, user, key) = store_with_user(10_000, 0).await;
    store
        .change_balance(&BalanceChange {
            user_id: user,
            amount: 50,
            free: true,
            reason: "promo".into(),
        })
        .await
        .unwrap();
    let far = store::now_ms() + 60_000;
    store
        .reserve(&hold("b1", user, &key, 500, far))
        .await
        .unwrap();
    let batch = vec![
        settlement("b1", user, &key, 100),
        settlement("b2", user, &key, 200),
        settlement("b1", user, &key, 100), // a duplicate within the batch
        settlement("b3", user, &key, 0),   // a failed request: recorded, not charged
    ];
    let outcomes = store.settle_many(&batch).await.unwrap();
    assert_eq!(
        outcomes,
        vec![
            SettleOutcome::Charged,
            SettleOutcome::Charged,
            SettleOutcome::AlreadySettled,
            SettleOutcome::Charged
        ]
    );
    // Settled again later: nothing changes.
    let again = store.settle_many(&batch).await.unwrap();
    assert!(again.iter().all(|o| *o == SettleOutcome::AlreadySettled));
    let u = store.get_user(user).await.unwrap();
    assert_eq!((u.free_balance, u.balance, u.held), (0, 9_750, 0));
    let k = store.get_key(&key).await.unwrap();
    assert_eq!((k.used_fee, k.used_times, k.held), (300, 3, 0));
    // Newest first: b2 then b1; each balance_after as if applied in order.
    let ledger = store.ledger(user, 10).await.unwrap();
    let charges: Vec<(Option<&str>, i64, i64)> = ledger
        .iter()
        .filter(|e| e.kind == "charge")
        .map(|e| (e.request_id.as_deref(), e.amount, e.balance_after))
        .collect();
    assert_eq!(
        charges,
        vec![(Some("b2"), -200, 9_750), (Some("b1"), -100, 9_950)]
    );
    store.close().await;
}

#[tokio::test]
async fn daily_totals_count_each_settled_request_once_and_agree_with_the_records() {
    let (store, user, key) = store_with_user(1_000_000, 0).await;
    const DAY: i64 = 86_400_000;
    let today = store::now_ms() / DAY * DAY;
    let at = |id: &str, when: i64, model: &str, provider: &str, cost: i64| Settlement {
        created_at: when,
        model: model.into(),
        provider: provider.into(),
        input_tokens: 10,
        output_tokens: 5,
        ..settlement(id, user, &key, cost)
    };
    let speech = Settlement {
        unit: "characters".into(),
        input_tokens: 400,
        ..at("r6", today + 5, "tts", "p", 7)
    };
    // A batch with a duplicate of its own, then a replay of part of it.
    let batch = vec![
        at("r1", today - DAY + 1, "m", "p", 100),
        at("r2", today - DAY + 2, "m", "q", 20),
        at("r3", today + 1, "m", "p", 3),
        at("r3", today + 1, "m", "p", 3),
        at("r4", today + 2, "n", "p", 40),
        speech,
    ];
    store.settle_many(&batch).await.unwrap();
    store.settle_many(&batch[2..4]).await.unwrap();
    store
        .settle(&at("r5", today + 3, "m", "p", 5))
        .await
        .unwrap();

    assert_eq!(
        store.spend_since_day(user, today / DAY).await.unwrap(),
        (55, 4)
    );
    assert_eq!(
        store.spend_since_day(user, today / DAY - 1).await.unwrap(),
        (175, 6)
    );
    let daily = store.daily_usage(user, today / DAY - 1).await.unwrap();
    assert_eq!(
        daily,
        vec![
            (today / DAY - 1, "m".to_string(), 120, 30),
            (today / DAY, "m".to_string(), 8, 30),
            (today / DAY, "n".to_string(), 40, 15),
            (today / DAY, "tts".to_string(), 7, 0),
        ]
    );
    // Whole days read the totals; a key or a time inside a day reads the
    // records: both agree.
    let from_totals = store
        .usage_by_day(&store::UsageFilter {
            since: Some(today - DAY),
            ..Default::default()
        })
        .await
        .unwrap();
    let from_records = store
        .usage_by_day(&store::UsageFilter {
            since: Some(today - DAY),
            key_id: Some(key.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(from_totals, from_records);
    assert_eq!(
        from_totals
            .iter()
            .map(|d| (d.requests, d.cost, d.tokens))
            .collect::<Vec<_>>(),
        vec![(2, 120, 30), (4, 55, 45)]
    );
    let one_channel = store
        .usage_by_day(&store::UsageFilter {
            provider: Some("q".into()),
            user_id: Some(user),
            model: Some("m".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one_channel.len(), 1);
    assert_eq!((one_channel[0].requests, one_channel[0].cost), (1, 20));
    let inside_today = store
        .usage_by_day(&store::UsageFilter {
            since: Some(today + 2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((inside_today[0].requests, inside_today[0].cost), (3, 52));

    // An upstream's absurd token counts settle (and are charged) all the
    // same; the day's tokens stay a number.
    for id in ["huge1", "huge2", "huge3"] {
        let huge = Settlement {
            input_tokens: i64::MAX,
            output_tokens: i64::MAX,
            ..at(id, today + 10, "big", "p", 1)
        };
        assert_eq!(store.settle(&huge).await.unwrap(), SettleOutcome::Charged);
    }
    let daily = store.daily_usage(user, today / DAY).await.unwrap();
    let big = daily.iter().find(|d| d.1 == "big").unwrap();
    assert_eq!((big.2, big.3), (3, 3_000_000_000_000_000));
    let by_day = store
        .usage_by_day(&store::UsageFilter {
            model: Some("big".into()),
            key_id: Some(key.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_day[0].tokens, 3_000_000_000_000_000);
    store.close().await;
}

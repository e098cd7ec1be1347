//! Top-up orders on a real database (SQLite, or PostgreSQL when
//! `TOLLGATE_TEST_POSTGRES_URL` is set): a payment credits once whatever
//! reports it and however often, at once or one after another; refunds
//! take back their share once; unpaid endings never touch the balance.

use store::{
    Applied, NewOrder, NewUser, Order, OrderFilter, OrderState, PaymentChange, PaymentEvent, Store,
};

const CREDIT: i64 = 105_000_000_000; // $105 for $100 with a 5 % bonus

async fn store_and_order() -> (Store, i64, Order) {
    let store = Store::connect(&store::testing::fresh_database_url().await)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let user = store
        .create_user(&NewUser {
            name: "payer".into(),
            group_name: "default".into(),
            tier: "free".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let order = store
        .insert_order(&NewOrder {
            user_id: user.id,
            provider: "stripe".into(),
            method: "checkout".into(),
            currency: "usd".into(),
            amount: 10_000,
            credit: CREDIT,
            bonus: 5_000_000_000,
        })
        .await
        .unwrap();
    let order = store
        .order_opened(order.id, "cs_test_1", "https://pay.example/cs_test_1", None)
        .await
        .unwrap();
    (store, user.id, order)
}

fn event(id: &str, kind: &str) -> PaymentEvent {
    PaymentEvent {
        provider: "stripe".into(),
        id: id.into(),
        kind: kind.into(),
    }
}

fn paid() -> PaymentChange {
    PaymentChange::Paid {
        payment_id: Some("pi_1".into()),
    }
}

async fn balance(store: &Store, user: i64) -> i64 {
    store.get_user(user).await.unwrap().balance
}

#[tokio::test]
async fn a_payment_reported_many_times_at_once_credits_once() {
    let (store, user, order) = store_and_order().await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        // Half replay one event id, half report the same payment under
        // other ids (a reconciliation, a second event type).
        let id = if i % 2 == 0 {
            "evt_same".to_string()
        } else {
            format!("reconcile:{i}")
        };
        tasks.push(tokio::spawn(async move {
            store
                .apply_payment(
                    &event(&id, "checkout.session.completed"),
                    Some(order.id),
                    &paid(),
                )
                .await
                .unwrap()
        }));
    }
    let mut changed = 0;
    for task in tasks {
        if let Applied::Changed(_) = task.await.unwrap() {
            changed += 1;
        }
    }
    assert_eq!(changed, 1);
    assert_eq!(balance(&store, user).await, CREDIT);
    let order = store.get_order(order.id).await.unwrap();
    assert_eq!(order.state, OrderState::Paid);
    assert_eq!(order.payment_id.as_deref(), Some("pi_1"));
    let ledger = store.ledger(user, 10).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].kind, "topup");
    assert_eq!(ledger[0].amount, CREDIT);
    assert_eq!(
        ledger[0].request_id.as_deref(),
        Some(format!("order:{}", order.id).as_str())
    );
    // Found by its payment, as a refund finds it.
    assert_eq!(
        store.order_by_payment("stripe", "pi_1").await.unwrap().id,
        order.id
    );
}

#[tokio::test]
async fn an_expired_or_failed_order_credits_nothing_and_a_duplicate_changes_nothing() {
    let (store, user, order) = store_and_order().await;
    let first = store
        .apply_payment(
            &event("evt_exp", "checkout.session.expired"),
            Some(order.id),
            &PaymentChange::Expired,
        )
        .await
        .unwrap();
    assert!(matches!(first, Applied::Changed(ref o) if o.state == OrderState::Expired));
    let again = store
        .apply_payment(
            &event("evt_exp", "checkout.session.expired"),
            Some(order.id),
            &PaymentChange::Expired,
        )
        .await
        .unwrap();
    assert_eq!(again, Applied::Duplicate);
    // A failure after the expiry changes nothing.
    let failed = store
        .apply_payment(
            &event("evt_fail", "checkout.session.async_payment_failed"),
            Some(order.id),
            &PaymentChange::Failed,
        )
        .await
        .unwrap();
    assert!(matches!(failed, Applied::Unchanged(ref o) if o.state == OrderState::Expired));
    assert_eq!(balance(&store, user).await, 0);
    assert!(store.ledger(user, 10).await.unwrap().is_empty());
    let none = store
        .apply_payment(
            &event("evt_other", "customer.created"),
            None,
            &PaymentChange::Nothing,
        )
        .await
        .unwrap();
    assert_eq!(none, Applied::NoOrder);
    let events = store.order_events(order.id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].2, "unchanged");
}

#[tokio::test]
async fn refunds_take_back_their_share_once_and_may_leave_the_balance_owed() {
    let (store, user, order) = store_and_order().await;
    store
        .apply_payment(&event("evt_pay", "invoice.paid"), Some(order.id), &paid())
        .await
        .unwrap();
    // The user spends most of it.
    store
        .change_balance(&store::BalanceChange {
            user_id: user,
            amount: -100_000_000_000,
            free: false,
            reason: "spent".into(),
        })
        .await
        .unwrap();
    // A quarter refunded, reported twice under two event ids.
    for id in ["evt_r1", "evt_r1_again"] {
        store
            .apply_payment(
                &event(id, "charge.refunded"),
                Some(order.id),
                &PaymentChange::Refunded {
                    refunded_total: 2_500,
                },
            )
            .await
            .unwrap();
    }
    assert_eq!(balance(&store, user).await, 5_000_000_000 - 26_250_000_000);
    let order_now = store.get_order(order.id).await.unwrap();
    assert_eq!(order_now.state, OrderState::Paid);
    assert_eq!(order_now.refunded_amount, 2_500);
    // Then the rest: the whole credit has been taken back.
    store
        .apply_payment(
            &event("evt_r2", "charge.refunded"),
            Some(order.id),
            &PaymentChange::Refunded {
                refunded_total: 10_000,
            },
        )
        .await
        .unwrap();
    assert_eq!(balance(&store, user).await, -100_000_000_000);
    let order_now = store.get_order(order.id).await.unwrap();
    assert_eq!(order_now.state, OrderState::Refunded);
    assert_eq!(order_now.refunded_credit, CREDIT);
    let kinds: Vec<String> = store
        .ledger(user, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["refund", "refund", "debit", "topup"]);
    // Paid days count the order once with what was refunded of it.
    let days = store.paid_by_day(0).await.unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].orders, 1);
    assert_eq!(days[0].amount, 10_000);
    assert_eq!(days[0].refunded_amount, 10_000);
    // A user's listing, and the admin's by state.
    let mine = store
        .list_orders(&OrderFilter {
            user_id: Some(user),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    let pending = store
        .list_orders(&OrderFilter {
            state: Some(OrderState::Pending),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(pending.is_empty());
}

#[tokio::test]
async fn a_customer_is_kept_once_per_user() {
    let (store, user, _) = store_and_order().await;
    assert_eq!(store.customer_of(user, "stripe").await.unwrap(), None);
    assert_eq!(
        store.keep_customer(user, "stripe", "cus_a").await.unwrap(),
        "cus_a"
    );
    assert_eq!(
        store.keep_customer(user, "stripe", "cus_b").await.unwrap(),
        "cus_a"
    );
}

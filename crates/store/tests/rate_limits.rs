//! Rate limits set on users and keys (SQLite, or PostgreSQL when
//! `TOLLGATE_TEST_POSTGRES_URL` is set): written at creation, set, cleared or
//! left alone by an update, and read back with the key for authentication.

use store::{KeyUpdate, NewKey, NewUser, RateLimits, RateLimitsUpdate, Store, UserUpdate};

async fn fresh_store() -> Store {
    let store = Store::connect(&store::testing::fresh_database_url().await)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

fn new_key(id: &str, user_id: i64, limits: RateLimits) -> NewKey {
    NewKey {
        id: id.into(),
        user_id,
        key_hash: format!("hash-{id}"),
        key_prefix: "sk-abcd".into(),
        key_last4: "wxyz".into(),
        remark: String::new(),
        is_admin: false,
        permissions: vec![],
        max_fee: 0,
        expired_at: None,
        limits,
    }
}

#[tokio::test]
async fn limits_are_written_set_cleared_and_left_alone() {
    let store = fresh_store().await;
    let user = store
        .create_user(&NewUser {
            name: "limited".into(),
            group_name: "default".into(),
            tier: "free".into(),
            membership_expires_at: None,
            limits: RateLimits {
                rpm: Some(600),
                tpm: None,
                concurrency: Some(4),
            },
        })
        .await
        .unwrap();
    assert_eq!(user.limits.rpm, Some(600));
    assert_eq!(user.limits.concurrency, Some(4));

    let limits = RateLimits {
        rpm: Some(60),
        tpm: Some(10_000),
        concurrency: None,
    };
    let key = store
        .insert_key(&new_key("key_a", user.id, limits), 10)
        .await
        .unwrap();
    assert_eq!(key.limits, limits);

    // Set one, clear another, leave the third; other fields are untouched.
    let update = KeyUpdate {
        remark: Some("ci".into()),
        limits: RateLimitsUpdate {
            rpm: Some(Some(120)),
            tpm: Some(None),
            concurrency: None,
        },
        ..KeyUpdate::default()
    };
    let key = store.update_key("key_a", &update).await.unwrap();
    assert_eq!(
        key.limits,
        RateLimits {
            rpm: Some(120),
            tpm: None,
            concurrency: None
        }
    );
    assert_eq!(key.remark, "ci");
    // An update naming no limit changes none.
    let key = store
        .update_key("key_a", &KeyUpdate::default())
        .await
        .unwrap();
    assert_eq!(key.limits.rpm, Some(120));

    let user = store
        .update_user(
            user.id,
            &UserUpdate {
                limits: RateLimitsUpdate {
                    rpm: Some(None),
                    tpm: Some(Some(50_000)),
                    concurrency: None,
                },
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        user.limits,
        RateLimits {
            rpm: None,
            tpm: Some(50_000),
            concurrency: Some(4)
        }
    );
    assert_eq!(user.group_name, "default");

    // Authentication reads both, each from its own row.
    let (key, owner) = store.find_key_by_hash("hash-key_a").await.unwrap().unwrap();
    assert_eq!(key.limits.rpm, Some(120));
    assert_eq!(owner.limits, user.limits);
    store.close().await;
}

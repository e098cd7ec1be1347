//! Console logins and sessions: a user found by name or e-mail, sessions
//! found by their hash while open and the user allowed, closed by a
//! password change (but the one kept), by disabling, or one by one by
//! their owner only.

use store::{NewSession, NewUser, Store, StoreError};

async fn store() -> Store {
    let store = Store::connect(&store::testing::fresh_database_url().await)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

async fn user(store: &Store, name: &str) -> i64 {
    store
        .create_user(&NewUser {
            name: name.into(),
            group_name: "default".into(),
            tier: "free".into(),
            membership_expires_at: None,
            limits: Default::default(),
        })
        .await
        .unwrap()
        .id
}

fn session(id: &str, user_id: i64, expires_at: i64) -> NewSession {
    NewSession {
        id_hash: id.into(),
        user_id,
        csrf_token: format!("csrf-{id}"),
        expires_at,
        ip: "127.0.0.1".into(),
        user_agent: "test".into(),
    }
}

#[tokio::test]
async fn logins_and_sessions_belong_to_their_user() {
    let store = store().await;
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    store
        .set_console_access(alice, Some("Alice@Example.com"), true, false)
        .await
        .unwrap();
    assert!(matches!(
        store
            .set_console_access(bob, Some("alice@example.COM"), false, false)
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .set_password(alice, Some("hash-1"), None)
        .await
        .unwrap();
    let login = store.login_of("ALICE@example.com").await.unwrap();
    assert_eq!(login.user.id, alice);
    assert_eq!(login.password_hash.as_deref(), Some("hash-1"));
    assert!(login.is_admin && !login.is_disabled);
    assert_eq!(store.login_of("bob").await.unwrap().password_hash, None);
    assert!(matches!(
        store.login_of("carol").await,
        Err(StoreError::NotFound(_))
    ));

    let later = store::now_ms() + 60_000;
    store
        .open_session(&session("s1", alice, later))
        .await
        .unwrap();
    store
        .open_session(&session("s2", alice, later))
        .await
        .unwrap();
    store
        .open_session(&session("old", alice, store::now_ms() - 1))
        .await
        .unwrap();
    let s1 = store.session("s1").await.unwrap();
    assert_eq!(
        (s1.user.id, s1.is_admin, s1.csrf_token.as_str()),
        (alice, true, "csrf-s1")
    );
    assert!(matches!(
        store.session("old").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.sessions_of(alice).await.unwrap().len(), 2);
    // Bob cannot close Alice's session.
    assert!(!store.close_session(bob, "s1").await.unwrap());
    // A new password closes every session but the one kept.
    store
        .set_password(alice, Some("hash-2"), Some("s1"))
        .await
        .unwrap();
    assert!(store.session("s1").await.is_ok());
    assert!(store.session("s2").await.is_err());
    // Disabled: no session works.
    store
        .set_console_access(alice, Some("alice@example.com"), true, true)
        .await
        .unwrap();
    assert!(store.session("s1").await.is_err());
    store
        .open_session(&session("bob-old", bob, store::now_ms() - 1))
        .await
        .unwrap();
    assert_eq!(store.sweep_sessions().await.unwrap(), 1, "the expired one");
}

//! Users' files as recorded: an upload is a row before it is ready, ready
//! files fit their owner's quota even when finished at once, listings are
//! the owner's only, housekeeping finds what is expired or given up, and
//! storage is charged once per day, pro rata.

use store::{
    FileFilter, FileQuota, FileUpdate, FinishedUpload, NewUser, Store, StoreError, StoredFile,
};

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

const ROOMY: FileQuota = FileQuota {
    max_total_bytes: 1 << 40,
    max_files: 1000,
};

fn finished(id: &str, user_id: i64, name: &str, size: i64, tags: &[&str]) -> FinishedUpload {
    FinishedUpload {
        id: id.into(),
        user_id,
        filename: name.into(),
        purpose: 2,
        is_public: false,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        content_type: "image/png".into(),
        size,
        sha256: "ab".repeat(32),
        expires_at: None,
    }
}

async fn upload(store: &Store, f: FinishedUpload) -> StoredFile {
    assert!(store.begin_upload(&f.id, f.user_id, 100, 0).await.unwrap());
    store.finish_upload(&f, ROOMY).await.unwrap()
}

fn all() -> FileFilter {
    FileFilter {
        limit: 100,
        ..FileFilter::default()
    }
}

#[tokio::test]
async fn an_upload_is_ready_only_once_finished_and_listed_only_to_its_owner() {
    let store = store().await;
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    assert!(store.begin_upload("f1", alice, 100, 0).await.unwrap());
    assert!(matches!(
        store.get_file("f1").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_files(alice, &all()).await.unwrap().1, 0);
    let f1 = store
        .finish_upload(
            &finished("f1", alice, "cat 50%.png", 10, &["pets", "a"]),
            ROOMY,
        )
        .await
        .unwrap();
    assert_eq!(f1.tags, ["pets", "a"]);
    upload(&store, finished("f2", alice, "cathedral.png", 20, &["a"])).await;
    upload(&store, finished("f3", bob, "cat.png", 30, &["pets"])).await;

    let (files, total) = store.list_files(alice, &all()).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        files.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        ["f2", "f1"],
        "newest first"
    );
    let by = |filter: FileFilter| {
        let store = store.clone();
        async move {
            let (files, _) = store.list_files(alice, &filter).await.unwrap();
            files.into_iter().map(|f| f.id).collect::<Vec<_>>()
        }
    };
    let tagged = FileFilter {
        tags: vec!["pets".into(), "a".into()],
        ..all()
    };
    assert_eq!(by(tagged).await, ["f1"], "every tag asked, Bob's left out");
    let prefix = FileFilter {
        name_prefix: Some("cat 50%".into()),
        ..all()
    };
    assert_eq!(by(prefix).await, ["f1"]);
    let literal = FileFilter {
        name_prefix: Some("cat_".into()),
        ..all()
    };
    assert!(by(literal).await.is_empty(), "`_` is not a wildcard");
    let later = FileFilter {
        created_from: Some(f1.created_at + 1_000_000),
        ..all()
    };
    assert!(by(later).await.is_empty());
    let public = FileFilter {
        is_public: Some(true),
        ..all()
    };
    assert!(by(public).await.is_empty());

    // Bob cannot change, delete or fetch by id what is Alice's.
    let update = FileUpdate {
        is_public: Some(true),
        tags: Some(vec!["b".into()]),
        ..FileUpdate::default()
    };
    assert!(matches!(
        store.update_file(bob, "f1", &update).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(!store.start_deleting_file(bob, "f1").await.unwrap());
    assert!(store
        .files_by_ids(bob, &["f1".into(), "f3".into()])
        .await
        .unwrap()
        .iter()
        .all(|f| f.user_id == bob));
    let updated = store.update_file(alice, "f1", &update).await.unwrap();
    assert!(updated.is_public);
    assert_eq!(updated.tags, ["b"]);
    let retagged = FileFilter {
        tags: vec!["pets".into()],
        ..all()
    };
    assert!(by(retagged).await.is_empty(), "old tags are gone");
    assert_eq!(store.file_usage(alice).await.unwrap(), (30, 2));
}

#[tokio::test]
async fn uploads_finished_at_once_never_exceed_the_quota() {
    let store = store().await;
    let alice = user(&store, "alice").await;
    let quota = FileQuota {
        max_total_bytes: 50,
        max_files: 100,
    };
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let f = finished(&format!("q{i}"), alice, "x", 10, &[]);
            assert!(store.begin_upload(&f.id, alice, 100, 0).await.unwrap());
            store.finish_upload(&f, quota).await
        }));
    }
    let mut ready = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ready += 1,
            Err(StoreError::Conflict(message)) => assert!(message.contains("50"), "{message}"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ready, 5);
    assert_eq!(store.file_usage(alice).await.unwrap(), (50, 5));
    // And by count.
    let few = FileQuota {
        max_total_bytes: 1 << 40,
        max_files: 5,
    };
    let f = finished("one-more", alice, "x", 1, &[]);
    assert!(store.begin_upload(&f.id, alice, 100, 0).await.unwrap());
    assert!(matches!(
        store.finish_upload(&f, few).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn uploads_at_once_are_capped_and_expired_files_are_hidden() {
    let store = store().await;
    let alice = user(&store, "alice").await;
    assert!(store.begin_upload("u1", alice, 2, 0).await.unwrap());
    assert!(store.begin_upload("u2", alice, 2, 0).await.unwrap());
    assert!(!store.begin_upload("u3", alice, 2, 0).await.unwrap());
    // Those begun before `since` (abandoned) do not count.
    assert!(store
        .begin_upload("u3", alice, 2, store::now_ms() + 1)
        .await
        .unwrap());
    let mut brief = finished("u1", alice, "brief", 5, &[]);
    brief.expires_at = Some(store::now_ms() + 100);
    store.finish_upload(&brief, ROOMY).await.unwrap();
    assert_eq!(store.list_files(alice, &all()).await.unwrap().1, 1);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(store.list_files(alice, &all()).await.unwrap().1, 0);
    assert!(matches!(
        store.get_file("u1").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        matches!(
            store
                .update_file(
                    alice,
                    "u1",
                    &FileUpdate {
                        expires_at: Some(None),
                        ..FileUpdate::default()
                    }
                )
                .await,
            Err(StoreError::NotFound(_))
        ),
        "an expired file cannot be revived"
    );
    // Kept until it expired, not until the sweeper came.
    assert_eq!(
        store.files_to_remove(store::now_ms(), 0).await.unwrap(),
        ["u1"]
    );
    store.file_removed("u1", true).await.unwrap();
    let day = store::now_ms() / 86_400_000;
    let charged = store
        .charge_storage_day(day, 1_000_000_000_000, "file storage", 0)
        .await
        .unwrap()
        .unwrap();
    // 5 bytes for ~100 ms at 1000 USD per GB-day: far below a nano-USD.
    assert!(charged.is_empty(), "{charged:?}");
}

#[tokio::test]
async fn housekeeping_finds_expired_files_and_given_up_uploads_and_ends_them() {
    let store = store().await;
    let alice = user(&store, "alice").await;
    let now = store::now_ms();
    let mut expiring = finished("old", alice, "x", 5, &["t"]);
    expiring.expires_at = Some(now + 1000);
    upload(&store, expiring).await;
    upload(&store, finished("kept", alice, "y", 5, &[])).await;
    assert!(store.begin_upload("stale", alice, 100, 0).await.unwrap());
    assert!(store
        .files_to_remove(now, now - 60_000)
        .await
        .unwrap()
        .is_empty());
    let later = store::now_ms() + 1000;
    let mut due = store.files_to_remove(now + 1000, later).await.unwrap();
    due.sort();
    assert_eq!(due, ["old", "stale"]);
    for id in &due {
        store.file_removed(id, false).await.unwrap();
    }
    assert!(store
        .files_to_remove(now + 1000, later)
        .await
        .unwrap()
        .is_empty());
    let (files, _) = store.list_files(alice, &all()).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].id, "kept");
    // An upload given up cannot be finished after.
    assert!(matches!(
        store
            .finish_upload(&finished("stale", alice, "x", 1, &[]), ROOMY)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn storage_is_charged_once_per_day_pro_rata_deleted_files_included() {
    let store = store().await;
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let gb = 1_000_000_000;
    let kept = upload(&store, finished("kept", alice, "x", 2 * gb, &[])).await;
    let gone = upload(&store, finished("gone", alice, "y", gb, &[])).await;
    upload(&store, finished("bobs", bob, "z", 1, &[])).await;
    assert!(store.start_deleting_file(alice, "gone").await.unwrap());
    store.file_removed("gone", true).await.unwrap();
    let deleted_at = store::now_ms();

    let day = store::now_ms() / 86_400_000;
    let end = (day + 1) * 86_400_000;
    let price = 1_000_000; // nano-USD per GB-day
    let charges = store
        .charge_storage_day(day, price, "file storage", 0)
        .await
        .unwrap()
        .unwrap();
    let alice_used = 2 * gb as i128 * (end - kept.created_at) as i128
        + gb as i128 * (deleted_at - gone.created_at) as i128;
    let expected = store::storage_cost(alice_used, price);
    let alices = charges.iter().find(|c| c.0 == alice).unwrap().1;
    // The deletion time is the store's own, a moment before `deleted_at`.
    assert!(
        (expected - 20..=expected).contains(&alices),
        "{alices} vs {expected}"
    );
    assert!(alices > 0);
    assert!(
        charges.iter().all(|c| c.0 != bob),
        "one byte for a day rounds to nothing"
    );
    let ledger = store.ledger(alice, 10).await.unwrap();
    assert_eq!(ledger[0].amount, -alices);
    assert_eq!(ledger[0].kind, "storage");
    assert_eq!(
        ledger[0].request_id.as_deref(),
        Some(&*format!("storage:{alice}:{day}"))
    );
    let user = store.get_user(alice).await.unwrap();
    assert_eq!(
        user.balance + user.free_balance,
        -alices,
        "storage used is owed"
    );
    // Nothing before storage was priced.
    assert_eq!(
        store
            .charge_storage_day(day - 1, price, "file storage", end)
            .await
            .unwrap(),
        Some(vec![])
    );
    // Never twice.
    assert!(store
        .charge_storage_day(day, price, "file storage", 0)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.ledger(alice, 10).await.unwrap().len(), 1);
    assert_eq!(store.last_storage_day().await.unwrap(), Some(day));
}

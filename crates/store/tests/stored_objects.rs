//! Stored objects on a real database (SQLite, or PostgreSQL when
//! `TOLLGATE_TEST_POSTGRES_URL` is set): ordering, pagination, filters,
//! ownership and retention.

use serde_json::{json, Map, Value};
use store::{CompletionFilter, Conversation, Store, StoredCompletion, StoredResponse};

async fn fresh_store() -> Store {
    let store = Store::connect(&store::testing::fresh_database_url().await)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

fn metadata(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

fn completion(id: &str, user_id: i64, created_at: i64, topic: &str) -> StoredCompletion {
    StoredCompletion {
        id: id.into(),
        user_id,
        model: "m".into(),
        metadata: metadata(&[("topic", topic)]),
        messages: vec![json!({"id": format!("{id}-0"), "role": "user", "content": "hi"})],
        completion: json!({"id": id}),
        created_at,
    }
}

#[tokio::test]
async fn completions_list_in_order_with_cursor_and_metadata_filter() {
    let store = fresh_store().await;
    // More rows than one internal page, so the metadata filter has to page.
    for n in 0..450 {
        let topic = if n % 100 == 7 { "rare" } else { "common" };
        store
            .insert_completion(&completion(&format!("c{n:03}"), 1, 1_000 + n, topic), None)
            .await
            .unwrap();
    }
    store
        .insert_completion(&completion("other", 2, 5, "rare"), None)
        .await
        .unwrap();
    let mut filter = CompletionFilter {
        user_id: 1,
        metadata: metadata(&[("topic", "rare")]),
        limit: 3,
        ascending: true,
        ..Default::default()
    };
    let ids = |found: Vec<StoredCompletion>| found.into_iter().map(|c| c.id).collect::<Vec<_>>();
    // limit + 1 rows tell the caller there is more.
    assert_eq!(
        ids(store.list_completions(&filter).await.unwrap()),
        ["c007", "c107", "c207", "c307"]
    );
    filter.after = Some("c207".into());
    assert_eq!(
        ids(store.list_completions(&filter).await.unwrap()),
        ["c307", "c407"]
    );
    filter.ascending = false;
    filter.after = None;
    filter.limit = 1;
    assert_eq!(
        ids(store.list_completions(&filter).await.unwrap()),
        ["c407", "c307"]
    );
    // Another user's id is not a cursor, and its rows never show.
    filter.after = Some("other".into());
    assert!(store.list_completions(&filter).await.unwrap().is_empty());
    assert!(store.get_completion(1, "other").await.unwrap().is_none());
    assert!(!store.delete_completion(1, "other").await.unwrap());
    assert!(store
        .update_completion_metadata(1, "other", &Map::new())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn conversation_items_page_both_ways_and_go_with_their_conversation() {
    let store = fresh_store().await;
    let conv = Conversation {
        id: "conv_1".into(),
        user_id: 1,
        metadata: Map::new(),
        created_at: 1,
    };
    let items: Vec<(String, Value)> = (0..5)
        .map(|n| {
            (
                format!("msg_{n}"),
                json!({"id": format!("msg_{n}"), "n": n}),
            )
        })
        .collect();
    store
        .create_conversation(&conv, &items[..2], None)
        .await
        .unwrap();
    assert!(store
        .add_conversation_items(1, "conv_1", &items[2..])
        .await
        .unwrap());
    assert!(!store
        .add_conversation_items(2, "conv_1", &items[..1])
        .await
        .unwrap());

    let page = store
        .list_conversation_items(1, "conv_1", None, 2, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|i| i["n"].clone())
            .collect::<Vec<_>>(),
        [json!(0), json!(1)]
    );
    assert!(page.has_more);
    let page = store
        .list_conversation_items(1, "conv_1", Some("msg_3"), 10, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(!page.has_more);
    let page = store
        .list_conversation_items(1, "conv_1", Some("msg_3"), 10, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|i| i["n"].clone())
            .collect::<Vec<_>>(),
        [json!(2), json!(1), json!(0)]
    );
    assert!(store
        .list_conversation_items(2, "conv_1", None, 10, true)
        .await
        .unwrap()
        .is_none());

    assert!(store
        .delete_conversation_item(1, "conv_1", "msg_0")
        .await
        .unwrap());
    assert!(store
        .get_conversation_item(1, "conv_1", "msg_0")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_conversation_item(2, "conv_1", "msg_1")
        .await
        .unwrap()
        .is_none());
    assert!(store.delete_conversation(1, "conv_1").await.unwrap());
    // Its items went with it: a conversation reusing the id starts empty.
    store.create_conversation(&conv, &[], None).await.unwrap();
    let page = store
        .list_conversation_items(1, "conv_1", None, 10, true)
        .await
        .unwrap()
        .unwrap();
    assert!(page.items.is_empty());
}

#[tokio::test]
async fn retention_deletes_only_what_expired() {
    let store = fresh_store().await;
    let response = |id: &str| StoredResponse {
        id: id.into(),
        user_id: 1,
        previous_response_id: None,
        conversation_id: None,
        status: "completed".into(),
        background: false,
        response: json!({"id": id}),
        input_items: vec![],
        created_at: 1,
    };
    store
        .save_response(&response("resp_old"), None, Some(100))
        .await
        .unwrap();
    store
        .save_response(&response("resp_new"), None, Some(10_000))
        .await
        .unwrap();
    store
        .save_response(&response("resp_kept"), None, None)
        .await
        .unwrap();
    store
        .insert_completion(&completion("c_old", 1, 1, "x"), Some(100))
        .await
        .unwrap();
    let conv = |id: &str| Conversation {
        id: id.into(),
        user_id: 1,
        metadata: Map::new(),
        created_at: 1,
    };
    store
        .create_conversation(
            &conv("conv_old"),
            &[("msg_a".into(), json!({"id": "msg_a"}))],
            Some(100),
        )
        .await
        .unwrap();
    store
        .create_conversation(&conv("conv_new"), &[], Some(10_000))
        .await
        .unwrap();

    assert_eq!(store.sweep_expired_objects(5_000).await.unwrap(), 3);
    assert!(store.get_response(1, "resp_old").await.unwrap().is_none());
    assert!(store.get_response(1, "resp_new").await.unwrap().is_some());
    assert!(store.get_response(1, "resp_kept").await.unwrap().is_some());
    assert!(store.get_completion(1, "c_old").await.unwrap().is_none());
    assert!(store
        .get_conversation(1, "conv_old")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_conversation(1, "conv_new")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn saving_a_response_again_replaces_its_state_and_keeps_its_events() {
    let store = fresh_store().await;
    let mut r = StoredResponse {
        id: "resp_bg".into(),
        user_id: 1,
        previous_response_id: None,
        conversation_id: None,
        status: "queued".into(),
        background: true,
        response: json!({"status": "queued"}),
        input_items: vec![json!({"id": "msg_1"})],
        created_at: 1,
    };
    store.save_response(&r, None, None).await.unwrap();
    assert_eq!(store.response_events(1, "resp_bg").await.unwrap(), None);
    // Queued and untouched since: abandoned, once the cut-off passes it.
    assert!(store
        .stale_background_responses(0)
        .await
        .unwrap()
        .is_empty());
    let later = store::now_ms() + 1_000;
    assert_eq!(
        store.stale_background_responses(later).await.unwrap(),
        vec![r.clone()]
    );
    r.status = "completed".into();
    r.response = json!({"status": "completed"});
    let events = vec!["event: a\ndata: {}\n\n".to_string()];
    store.save_response(&r, Some(&events), None).await.unwrap();
    let stored = store.get_response(1, "resp_bg").await.unwrap().unwrap();
    assert_eq!(stored, r);
    assert_eq!(
        store.response_events(1, "resp_bg").await.unwrap(),
        Some(events)
    );
    assert!(store.get_response(2, "resp_bg").await.unwrap().is_none());
    assert!(!store.delete_response(2, "resp_bg").await.unwrap());
    assert!(store.delete_response(1, "resp_bg").await.unwrap());
}

#[tokio::test]
async fn updates_never_bring_back_a_deleted_response_nor_fail_a_finished_one() {
    let store = fresh_store().await;
    let mut r = StoredResponse {
        id: "resp_run".into(),
        user_id: 1,
        previous_response_id: None,
        conversation_id: None,
        status: "in_progress".into(),
        background: true,
        response: json!({"status": "in_progress"}),
        input_items: vec![],
        created_at: 1,
    };
    store.save_response(&r, None, None).await.unwrap();
    let later = store::now_ms() + 1_000;
    // The run finishes first: the stale-run sweep must then leave it alone.
    r.status = "completed".into();
    assert!(store
        .update_response(&r, Some(&["e".to_string()]))
        .await
        .unwrap());
    let mut failed = r.clone();
    failed.status = "failed".into();
    assert!(!store.fail_stale_response(&failed, later).await.unwrap());
    assert_eq!(
        store
            .get_response(1, "resp_run")
            .await
            .unwrap()
            .unwrap()
            .status,
        "completed"
    );
    // Deleted while running: the run's final update finds nothing to update.
    assert!(store.delete_response(1, "resp_run").await.unwrap());
    assert!(!store.update_response(&r, None).await.unwrap());
    assert!(store.get_response(1, "resp_run").await.unwrap().is_none());
}

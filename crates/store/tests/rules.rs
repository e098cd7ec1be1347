//! Override rules as stored: per owner, names unique per owner, imports all
//! or none, listings filtered and in running order, hit counts added.

use serde_json::json;
use store::{RuleFilter, Store, StoreError, StoredRule, OPERATOR};

async fn store() -> Store {
    let store = Store::connect(&store::testing::fresh_database_url().await)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

fn rule(
    id: &str,
    owner_id: i64,
    name: &str,
    priority: i64,
    api_types: &str,
    at: i64,
) -> StoredRule {
    StoredRule {
        id: id.into(),
        owner_id,
        name: name.into(),
        api_types: api_types.into(),
        priority,
        enabled: true,
        rule: json!({"ruleName": name, "priority": priority}),
        created_at: at,
        updated_at: at,
    }
}

fn all() -> RuleFilter {
    RuleFilter {
        limit: 100,
        ..RuleFilter::default()
    }
}

#[tokio::test]
async fn rules_belong_to_their_owner_and_list_in_running_order() {
    let store = store().await;
    store
        .insert_rules(
            &[
                rule("r1", 1, "low", 0, "chat.completions", 1),
                rule("r2", 1, "high", 5, "messages,responses", 2),
            ],
            10,
        )
        .await
        .unwrap();
    store
        .insert_rules(&[rule("r3", 2, "low", 0, "", 3)], 10)
        .await
        .unwrap();
    store
        .insert_rules(&[rule("op", OPERATOR, "low", 0, "", 4)], 10)
        .await
        .unwrap();
    let (mine, total) = store.list_rules(1, &all()).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        mine.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r2", "r1"]
    );
    assert_eq!(mine[0].rule["priority"], 5);
    // Another owner's rule is not found, however it is asked for.
    assert!(matches!(
        store.get_rule(1, "r3").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.delete_rules(1, &["r3".into()]).await.unwrap(), 0);
    assert_eq!(
        store
            .toggle_rules(1, &["r3".into(), "r1".into()], false)
            .await
            .unwrap(),
        1
    );
    // Filters.
    let store = &store;
    let only = |f: RuleFilter| async move {
        store
            .list_rules(1, &f)
            .await
            .unwrap()
            .0
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        only(RuleFilter {
            enabled: Some(true),
            ..all()
        })
        .await,
        ["r2"]
    );
    assert_eq!(
        only(RuleFilter {
            api_type: Some("responses".into()),
            ..all()
        })
        .await,
        ["r2"]
    );
    assert_eq!(
        only(RuleFilter {
            api_type: Some("response".into()),
            ..all()
        })
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        only(RuleFilter {
            name: Some("ig".into()),
            ..all()
        })
        .await,
        ["r2"]
    );
    assert_eq!(only(RuleFilter { offset: 1, ..all() }).await, ["r1"]);
}

#[tokio::test]
async fn names_are_unique_per_owner_and_imports_are_all_or_none() {
    let store = store().await;
    store
        .insert_rules(&[rule("a", 1, "same", 0, "", 1)], 10)
        .await
        .unwrap();
    let clash = store
        .insert_rules(
            &[
                rule("b", 1, "new", 0, "", 2),
                rule("c", 1, "same", 0, "", 3),
            ],
            10,
        )
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    assert_eq!(
        store.list_rules(1, &all()).await.unwrap().1,
        1,
        "nothing of the import stayed"
    );
    let too_many = store
        .insert_rules(
            &[rule("d", 1, "d", 0, "", 4), rule("e", 1, "e", 0, "", 5)],
            2,
        )
        .await;
    assert!(matches!(too_many, Err(StoreError::Conflict(_))));
    // Another owner may use the name.
    store
        .insert_rules(&[rule("f", 2, "same", 0, "", 6)], 10)
        .await
        .unwrap();
    // Renaming onto a taken name is refused.
    store
        .insert_rules(&[rule("g", 1, "other", 0, "", 7)], 10)
        .await
        .unwrap();
    let renamed = store.update_rule(&rule("g", 1, "same", 0, "", 7)).await;
    assert!(matches!(renamed, Err(StoreError::Conflict(_))));
    let changed = store
        .update_rule(&rule("g", 1, "third", 3, "", 7))
        .await
        .unwrap();
    assert_eq!(
        (changed.name.as_str(), changed.priority, changed.created_at),
        ("third", 3, 7)
    );
    assert!(store.rules_changed_at(1).await.unwrap() > 7);
}

#[tokio::test]
async fn hits_add_up_and_keep_the_latest_time() {
    let store = store().await;
    store
        .insert_rules(
            &[rule("a", 1, "a", 0, "", 1), rule("b", 1, "b", 0, "", 2)],
            10,
        )
        .await
        .unwrap();
    store.add_rule_hits(&[("a".into(), 3, 100)]).await.unwrap();
    store
        .add_rule_hits(&[("a".into(), 2, 50), ("b".into(), 1, 70)])
        .await
        .unwrap();
    let hits = store.rule_hits(1).await.unwrap();
    assert_eq!(
        hits.iter()
            .map(|h| (h.rule_id.as_str(), h.hits, h.last_hit_at))
            .collect::<Vec<_>>(),
        [("a", 5, Some(100)), ("b", 1, Some(70))]
    );
    store.delete_rules(1, &["a".into()]).await.unwrap();
    assert_eq!(store.rule_hits(1).await.unwrap().len(), 1);
}

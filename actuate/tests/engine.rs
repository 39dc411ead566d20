//! The engine's gates without a cluster: idempotency (also across processes, through the
//! actions table), the deny-list, the age limit, the cooldown and the eviction budget, on a
//! real store in a temporary directory and a manual clock.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use leakhound_actuate::clock::ManualClock;
use leakhound_actuate::engine::Engine;
use leakhound_actuate::model::{
    ActionRecord, Outcome, Step, Target, Trigger, TriggerKind, action_key,
};
use leakhound_actuate::policy::Policy;
use leakhound_ingest::store::Store;
use leakhound_schemas::events::Level;

fn t0() -> DateTime<Utc> {
    "2026-11-28T10:00:00Z".parse().unwrap()
}

fn trigger(id: &str, level: Level, ns: &str) -> Trigger {
    Trigger {
        kind: TriggerKind::Event,
        id: id.into(),
        level,
        target: Target {
            cluster: None,
            namespace: ns.into(),
            workload_kind: Some("Deployment".into()),
            workload: Some("orders".into()),
            pod: Some("orders-1".into()),
        },
        detected_at: t0(),
        summary: "growth_rule: test".into(),
    }
}

async fn engine(store: &Store, policy: Policy, clock: Arc<ManualClock>) -> Engine {
    Engine::new(store, policy, None, false, clock)
        .await
        .unwrap()
}

fn outcomes(records: &[ActionRecord]) -> Vec<(String, Outcome)> {
    records
        .iter()
        .map(|r| (r.action.clone(), r.outcome))
        .collect()
}

#[tokio::test]
async fn the_same_event_twice_acts_once_even_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let clock = Arc::new(ManualClock::new(t0() + Duration::minutes(1)));
    let mut e = engine(&store, Policy::default(), clock.clone()).await;
    let t = trigger("ev-1", Level::L1, "shop");
    let h = e.handle(&t).await;
    assert_eq!(
        outcomes(&h.records),
        vec![("record".into(), Outcome::Taken)]
    );
    assert_eq!(h.replayed, 0);
    let h = e.handle(&t).await;
    assert!(h.records.is_empty(), "{h:?}");
    assert_eq!(h.replayed, 1);
    assert_eq!(e.flush().await.unwrap(), 1);

    // A new process reads the actions table back: still a replay.
    let mut e2 = engine(&store, Policy::default(), clock).await;
    assert_eq!(e2.audit().loaded_rows(), 1);
    let h = e2.handle(&t).await;
    assert!(h.records.is_empty(), "{h:?}");
    assert_eq!(h.replayed, 1);
    // Another level of the same event is another decision.
    let h = e2.handle(&trigger("ev-1", Level::L2, "shop")).await;
    assert_eq!(h.records.len(), 1);
    assert_eq!(h.records[0].outcome, Outcome::Failed, "no client: {h:?}");
    assert!(
        h.records[0].reason.contains("no Kubernetes client"),
        "{h:?}"
    );
    assert!(!h.records[0].retryable);
}

#[tokio::test]
async fn deny_listed_and_stale_triggers_are_skipped_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let clock = Arc::new(ManualClock::new(t0() + Duration::minutes(1)));
    let mut e = engine(&store, Policy::default(), clock.clone()).await;
    let h = e.handle(&trigger("ev-ks", Level::L3, "kube-system")).await;
    assert_eq!(
        outcomes(&h.records),
        vec![
            ("capture".into(), Outcome::Skipped),
            ("evict".into(), Outcome::Skipped)
        ]
    );
    assert!(
        h.records[0]
            .reason
            .contains("kube-system is on the deny-list")
    );
    assert!(!h.pending_retry());
    assert!(
        e.handle(&trigger("ev-ks", Level::L3, "kube-system"))
            .await
            .records
            .is_empty()
    );

    clock.set(t0() + Duration::hours(3));
    let h = e.handle(&trigger("ev-old", Level::L2, "shop")).await;
    assert_eq!(outcomes(&h.records), vec![("hpa".into(), Outcome::Skipped)]);
    assert!(
        h.records[0].reason.contains("older than max_trigger_age"),
        "{h:?}"
    );
}

fn taken(action: &str, at: DateTime<Utc>, pod: &str) -> ActionRecord {
    let t = trigger(&format!("past-{action}-{pod}"), Level::L3, "shop");
    ActionRecord {
        decided_at: at,
        action_key: action_key(&t, Step::Evict, &t.target),
        trigger: TriggerKind::Event,
        trigger_id: t.id.clone(),
        target: Target {
            pod: Some(pod.into()),
            ..t.target.clone()
        },
        level: Some(Level::L3),
        action: action.into(),
        dry_run: false,
        outcome: Outcome::Taken,
        retryable: false,
        reason: "earlier".into(),
        request: None,
        http_status: Some(201),
    }
}

#[tokio::test]
async fn cooldown_holds_per_workload_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let clock = Arc::new(ManualClock::new(t0() + Duration::minutes(5)));
    let mut e = engine(&store, Policy::default(), clock.clone()).await;
    e.audit_mut().push(taken("hpa_create", t0(), "orders-1"));
    let h = e.handle(&trigger("ev-2", Level::L2, "shop")).await;
    assert_eq!(outcomes(&h.records), vec![("hpa".into(), Outcome::Skipped)]);
    assert!(h.records[0].reason.starts_with("cooldown:"), "{h:?}");
    // Past the 10-minute cooldown the gate opens (and the missing client is what stops it).
    clock.set(t0() + Duration::minutes(11));
    let h = e.handle(&trigger("ev-3", Level::L2, "shop")).await;
    assert_eq!(h.records[0].outcome, Outcome::Failed, "{h:?}");
    assert!(!h.records[0].reason.starts_with("cooldown:"));
}

#[tokio::test]
async fn the_eviction_budget_defers_and_reopens_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let policy = Policy::from_yaml("eviction_budget: 2\neviction_window: 10m\n").unwrap();
    let clock = Arc::new(ManualClock::new(t0() + Duration::minutes(2)));
    let mut e = engine(&store, policy.clone(), clock.clone()).await;
    e.audit_mut().push(taken("evict", t0(), "orders-7"));
    e.audit_mut()
        .push(taken("evict", t0() + Duration::minutes(1), "orders-8"));
    e.flush().await.unwrap();
    let t = trigger("ev-4", Level::L3, "shop");
    let h = e.handle(&t).await;
    let evict = h.records.iter().find(|r| r.action == "evict").unwrap();
    assert_eq!(evict.outcome, Outcome::Deferred, "{h:?}");
    assert!(
        evict.reason.contains("eviction budget used: 2 of 2"),
        "{}",
        evict.reason
    );
    assert!(h.pending_retry());

    // Deferred is retried by the same trigger; a fresh process sees the budget the same way.
    let mut e2 = engine(&store, policy, clock.clone()).await;
    let h = e2.handle(&t).await;
    let evict = h.records.iter().find(|r| r.action == "evict").unwrap();
    assert_eq!(evict.outcome, Outcome::Deferred);
    clock.set(t0() + Duration::minutes(12));
    let h = e2.handle(&t).await;
    let evict = h.records.iter().find(|r| r.action == "evict").unwrap();
    assert_eq!(
        evict.outcome,
        Outcome::Failed,
        "budget free again; no client: {h:?}"
    );
}

/// Names Kubernetes would refuse, from an event or an alert, are skipped before any gate that
/// compares them and before any call, each with the rule it broke; look-alikes of a denied
/// namespace are refused as names, not waved through as "other namespaces".
#[tokio::test]
async fn hostile_names_are_skipped_before_anything_is_compared_or_sent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let clock = Arc::new(ManualClock::new(t0() + Duration::minutes(1)));
    let policy = Policy::from_yaml("levels: { l3: [rollout_restart, evict] }").unwrap();
    let mut e = engine(&store, policy, clock).await;
    type Mutate = Box<dyn Fn(&mut Target)>;
    let cases: Vec<(&str, Mutate)> = vec![
        (
            "hash",
            Box::new(|t: &mut Target| t.workload = Some("orders#x".into())),
        ),
        (
            "query",
            Box::new(|t: &mut Target| t.pod = Some("orders-1?dryRun=".into())),
        ),
        (
            "dots",
            Box::new(|t: &mut Target| t.workload = Some("../../kube-system/pods/x".into())),
        ),
        (
            "pct",
            Box::new(|t: &mut Target| t.workload = Some("orders%2Fx".into())),
        ),
        (
            "upper",
            Box::new(|t: &mut Target| t.namespace = "KUBE-SYSTEM".into()),
        ),
        (
            "u2010",
            Box::new(|t: &mut Target| t.namespace = "kube\u{2010}system".into()),
        ),
        (
            "kind",
            Box::new(|t: &mut Target| t.workload_kind = Some("Deployment/x".into())),
        ),
        (
            "long",
            Box::new(|t: &mut Target| t.pod = Some("p".repeat(254))),
        ),
        (
            "empty",
            Box::new(|t: &mut Target| t.namespace = String::new()),
        ),
    ];
    for (name, mutate) in cases {
        let mut t = trigger(&format!("ev-{name}"), Level::L3, "shop");
        mutate(&mut t.target);
        let h = e.handle(&t).await;
        assert_eq!(h.records.len(), 2, "{name}: {h:?}");
        for r in &h.records {
            assert_eq!(r.outcome, Outcome::Skipped, "{name}: {r:?}");
            assert!(
                r.reason.contains("invalid") && r.reason.contains("nothing was sent"),
                "{name}: {}",
                r.reason
            );
            assert!(r.request.is_none() && r.http_status.is_none(), "{name}");
        }
    }
    // The real spelling is on the deny-list.
    let h = e
        .handle(&trigger("ev-denied", Level::L3, "kube-system"))
        .await;
    assert!(
        h.records.iter().all(|r| r.reason.contains("deny-list")),
        "{h:?}"
    );
}

//! Topic provisioning: read the cluster's state, compare it with `pipeline.yaml`,
//! and plan/apply the difference.
//!
//! Planning is pure ([`plan`]) so it is unit-tested without a broker. Applying
//! creates missing topics, adds partitions, and repairs config drift. Kafka's
//! IncrementalAlterConfigs is not exposed by the rdkafka crate, so a repair sends
//! the topic's full set of dynamic configs (current ones merged with the wanted
//! ones) through AlterConfigs: the effect is the same, and configs set by others are
//! kept.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use serde::Serialize;

use crate::config::ResolvedTopic;

/// A topic as the cluster has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TopicState {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas of partition 0.
    pub replication_factor: i32,
    /// Configs set on the topic (non-default).
    pub configs: BTreeMap<String, String>,
    /// Per-partition leader, replicas and in-sync replicas.
    pub partition_detail: Vec<PartitionState>,
}

/// One partition's placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionState {
    /// Partition id.
    pub id: i32,
    /// Leader broker id (-1: none).
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub isr: Vec<i32>,
}

/// One config that differs between the cluster and pipeline.yaml.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigChange {
    /// Config key.
    pub key: String,
    /// Current value (`None`: default).
    pub from: Option<String>,
    /// Wanted value.
    pub to: String,
}

/// What to do with one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Nothing: the topic is as configured.
    UpToDate {
        /// Topic name.
        name: String,
    },
    /// Create the topic.
    Create {
        /// The topic.
        topic: ResolvedTopic,
    },
    /// Bring an existing topic in line.
    Update {
        /// Topic name.
        name: String,
        /// New partition count, when more are wanted.
        add_partitions: Option<(i32, i32)>,
        /// Config drift to repair.
        config_changes: Vec<ConfigChange>,
        /// The full set of dynamic configs to send (current merged with wanted).
        #[serde(skip)]
        full_configs: BTreeMap<String, String>,
    },
}

impl Action {
    /// The topic name.
    pub fn name(&self) -> &str {
        match self {
            Action::UpToDate { name } | Action::Update { name, .. } => name,
            Action::Create { topic } => &topic.name,
        }
    }

    /// True when nothing needs doing.
    pub fn is_noop(&self) -> bool {
        matches!(self, Action::UpToDate { .. })
    }
}

/// Compares the wanted topics with the cluster. Returns the actions, or every
/// change that Kafka cannot make (fewer partitions, another replication factor, more
/// replicas than brokers) as one error.
pub fn plan(
    wanted: &[ResolvedTopic],
    actual: &HashMap<String, TopicState>,
    brokers: usize,
) -> anyhow::Result<Vec<Action>> {
    let mut actions = Vec::new();
    let mut refused = Vec::new();
    for t in wanted {
        if t.replication_factor as usize > brokers {
            refused.push(format!(
                "{}: replication factor {} is more than the {brokers} broker(s) in the cluster \
                 (use a profile with a lower topics.defaults.replication_factor, or add brokers)",
                t.name, t.replication_factor
            ));
            continue;
        }
        let Some(cur) = actual.get(&t.name) else {
            actions.push(Action::Create { topic: t.clone() });
            continue;
        };
        if t.partitions < cur.partitions {
            refused.push(format!(
                "{}: has {} partitions, pipeline.yaml asks for {}; Kafka cannot remove partitions \
                 (recreate the topic with `ridectl topics delete {} --yes` if you mean it)",
                t.name, cur.partitions, t.partitions, t.name
            ));
            continue;
        }
        if t.replication_factor != cur.replication_factor {
            refused.push(format!(
                "{}: replication factor is {}, pipeline.yaml asks for {}; changing it needs a \
                 partition reassignment (kafka-reassign-partitions), which ridectl does not do",
                t.name, cur.replication_factor, t.replication_factor
            ));
            continue;
        }
        let config_changes: Vec<ConfigChange> = t
            .config
            .iter()
            .filter(|(k, v)| cur.configs.get(*k) != Some(*v))
            .map(|(k, v)| ConfigChange {
                key: k.clone(),
                from: cur.configs.get(k).cloned(),
                to: v.clone(),
            })
            .collect();
        let add_partitions =
            (t.partitions > cur.partitions).then_some((cur.partitions, t.partitions));
        if config_changes.is_empty() && add_partitions.is_none() {
            actions.push(Action::UpToDate {
                name: t.name.clone(),
            });
        } else {
            let mut full_configs = cur.configs.clone();
            full_configs.extend(t.config.clone());
            actions.push(Action::Update {
                name: t.name.clone(),
                add_partitions,
                config_changes,
                full_configs,
            });
        }
    }
    if !refused.is_empty() {
        bail!(
            "cannot provision the topics as configured:\n  {}",
            refused.join("\n  ")
        );
    }
    Ok(actions)
}

fn opts(timeout: Duration) -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout))
}

/// Reads the state of the named topics (absent topics are left out) and the number
/// of brokers.
pub async fn describe(
    admin: &AdminClient<DefaultClientContext>,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<(HashMap<String, TopicState>, usize)> {
    let md = admin
        .inner()
        .fetch_metadata(None, timeout)
        .context("cannot read cluster metadata (is Kafka running? `ridectl local status`)")?;
    let brokers = md.brokers().len();
    let mut out = HashMap::new();
    for t in md.topics() {
        if !names.iter().any(|n| n == t.name()) || t.error().is_some() {
            continue;
        }
        let mut partition_detail: Vec<PartitionState> = t
            .partitions()
            .iter()
            .map(|p| PartitionState {
                id: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            })
            .collect();
        partition_detail.sort_by_key(|p| p.id);
        out.insert(
            t.name().to_string(),
            TopicState {
                name: t.name().to_string(),
                partitions: partition_detail.len() as i32,
                replication_factor: partition_detail
                    .first()
                    .map_or(0, |p| p.replicas.len() as i32),
                configs: BTreeMap::new(),
                partition_detail,
            },
        );
    }
    if out.is_empty() {
        return Ok((out, brokers));
    }
    let specs: Vec<ResourceSpecifier<'_>> =
        out.keys().map(|n| ResourceSpecifier::Topic(n)).collect();
    let results = admin
        .describe_configs(specs.iter(), &opts(timeout))
        .await
        .context("describe configs")?;
    let mut configs: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for r in results {
        let res = r.map_err(|e| anyhow::anyhow!("describe configs: {e}"))?;
        let rdkafka::admin::OwnedResourceSpecifier::Topic(name) = res.specifier else {
            continue;
        };
        let set: BTreeMap<String, String> = res
            .entries
            .into_iter()
            .filter(|e| e.source == ConfigSource::DynamicTopic)
            .filter_map(|e| e.value.map(|v| (e.name, v)))
            .collect();
        configs.push((name, set));
    }
    for (name, set) in configs {
        if let Some(state) = out.get_mut(&name) {
            state.configs = set;
        }
    }
    Ok((out, brokers))
}

/// Applies the actions; returns an error naming every topic that failed.
pub async fn apply(
    admin: &AdminClient<DefaultClientContext>,
    actions: &[Action],
    timeout: Duration,
) -> anyhow::Result<()> {
    let o = opts(timeout);
    let mut failures = Vec::new();
    let creates: Vec<NewTopic<'_>> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Create { topic } => Some(topic),
            _ => None,
        })
        .map(|t| {
            let mut nt = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            );
            for (k, v) in &t.config {
                nt = nt.set(k, v);
            }
            nt
        })
        .collect();
    if !creates.is_empty() {
        for r in admin
            .create_topics(creates.iter(), &o)
            .await
            .context("create topics")?
        {
            if let Err((name, code)) = r {
                failures.push(format!("create {name}: {code}"));
            }
        }
    }
    for a in actions {
        let Action::Update {
            name,
            add_partitions,
            config_changes,
            full_configs,
        } = a
        else {
            continue;
        };
        if let Some((_, to)) = add_partitions {
            let np = NewPartitions::new(name, *to as usize);
            for r in admin
                .create_partitions([&np], &o)
                .await
                .context("create partitions")?
            {
                if let Err((name, code)) = r {
                    failures.push(format!("add partitions to {name}: {code}"));
                }
            }
        }
        if !config_changes.is_empty() {
            let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
            for (k, v) in full_configs {
                alter = alter.set(k, v);
            }
            for r in admin
                .alter_configs([&alter], &o)
                .await
                .context("alter configs")?
            {
                if let Err((_, code)) = r {
                    failures.push(format!("alter configs of {name}: {code}"));
                }
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    wait_applied(admin, actions, timeout).await
}

/// Waits until the cluster reports what `actions` asked for (metadata and configs
/// propagate asynchronously), so the next command sees it.
async fn wait_applied(
    admin: &AdminClient<DefaultClientContext>,
    actions: &[Action],
    timeout: Duration,
) -> anyhow::Result<()> {
    let names: Vec<String> = actions
        .iter()
        .filter(|a| !a.is_noop())
        .map(|a| a.name().to_string())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (actual, _) = describe(admin, &names, timeout).await?;
        let done = actions.iter().all(|a| match a {
            Action::UpToDate { .. } => true,
            Action::Create { topic } => actual.get(&topic.name).is_some_and(|s| {
                s.partitions == topic.partitions
                    && topic
                        .config
                        .iter()
                        .all(|(k, v)| s.configs.get(k) == Some(v))
            }),
            Action::Update {
                name,
                add_partitions,
                config_changes,
                ..
            } => actual.get(name).is_some_and(|s| {
                add_partitions.is_none_or(|(_, to)| s.partitions == to)
                    && config_changes
                        .iter()
                        .all(|c| s.configs.get(&c.key) == Some(&c.to))
            }),
        });
        if done {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the cluster did not show the topic changes within {timeout:?}; check `ridectl topics describe`"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes one topic.
pub async fn delete(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    for r in admin
        .delete_topics(&[name], &opts(timeout))
        .await
        .context("delete topic")?
    {
        if let Err((name, code)) = r {
            bail!("cannot delete {name}: {code}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(partitions: i32, rf: i32, cfg: &[(&str, &str)]) -> ResolvedTopic {
        ResolvedTopic {
            role: "ride_events",
            name: "ride-events".into(),
            partitions,
            replication_factor: rf,
            config: cfg
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn state(partitions: i32, rf: i32, cfg: &[(&str, &str)]) -> HashMap<String, TopicState> {
        let s = TopicState {
            name: "ride-events".into(),
            partitions,
            replication_factor: rf,
            configs: cfg
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            partition_detail: vec![],
        };
        HashMap::from([(s.name.clone(), s)])
    }

    #[test]
    fn missing_topic_is_created() {
        let a = plan(&[wanted(12, 1, &[])], &HashMap::new(), 1).unwrap();
        assert!(matches!(a[0], Action::Create { .. }));
    }

    #[test]
    fn identical_topic_is_up_to_date() {
        let a = plan(
            &[wanted(12, 1, &[("retention.ms", "1")])],
            &state(12, 1, &[("retention.ms", "1")]),
            1,
        )
        .unwrap();
        assert!(a[0].is_noop());
    }

    #[test]
    fn drift_and_growth_are_repaired_keeping_other_configs() {
        let a = plan(
            &[wanted(24, 1, &[("retention.ms", "604800000")])],
            &state(12, 1, &[("retention.ms", "1000"), ("segment.ms", "5")]),
            1,
        )
        .unwrap();
        let Action::Update {
            add_partitions,
            config_changes,
            full_configs,
            ..
        } = &a[0]
        else {
            panic!()
        };
        assert_eq!(*add_partitions, Some((12, 24)));
        assert_eq!(config_changes[0].from.as_deref(), Some("1000"));
        assert_eq!(
            full_configs.get("segment.ms").map(String::as_str),
            Some("5")
        );
    }

    #[test]
    fn impossible_changes_are_refused_with_numbers() {
        let e = plan(&[wanted(6, 1, &[])], &state(12, 1, &[]), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has 12 partitions, pipeline.yaml asks for 6"),
            "{e}"
        );
        let e = plan(&[wanted(12, 3, &[])], &state(12, 1, &[]), 3)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("replication factor is 1, pipeline.yaml asks for 3"),
            "{e}"
        );
        let e = plan(&[wanted(12, 3, &[])], &HashMap::new(), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("replication factor 3 is more than the 1 broker(s)"),
            "{e}"
        );
    }
}

//! Bounds on what one client can make the relay store, and the policy past each: the first
//! refused request gets an ERROR `LIMIT_EXCEEDED` whose text names the setting and its value;
//! a second refusal on the same connection closes it with CLOSE `LIMIT_EXCEEDED` (a client
//! that ignores the error is broken or hostile, and every refusal costs the worker a frame).

use super::{ConnRelay, Counter, Engine, Output};
use crate::core::location::Location;
use crate::core::topics::TableBounds;
use crate::protocol::{CloseReason, ErrorCode, Frame};

/// The limits the engine enforces per connection and on the node's shared tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Distinct (topic, group) pairs one connection may subscribe to.
    pub subscriptions_per_connection_max: usize,
    /// Distinct client ids one connection may watch.
    pub watches_per_connection_max: usize,
    /// Longest topic name accepted in SUBSCRIBE (the wire allows 255).
    pub topic_bytes_max: usize,
    /// Longest queue-group name accepted in SUBSCRIBE (the wire allows 255).
    pub group_bytes_max: usize,
    /// Distinct topics with a local subscriber on this node (all connections together).
    pub topics_max: usize,
    /// Distinct client ids watched on this node (all connections together).
    pub watched_ids_max: usize,
    /// Subscriptions on this node, all connections, topics and groups together.
    pub subscriptions_max: usize,
    /// Watches on this node, all connections and ids together.
    pub watches_max: usize,
}

impl ClientLimits {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        ClientLimits {
            subscriptions_per_connection_max: cfg.subscriptions_per_connection_max,
            watches_per_connection_max: cfg.watches_per_connection_max,
            topic_bytes_max: cfg.topic_bytes_max,
            group_bytes_max: cfg.group_bytes_max,
            topics_max: cfg.topics_max,
            watched_ids_max: cfg.watched_ids_max,
            subscriptions_max: cfg.subscriptions_max,
            watches_max: cfg.watches_max,
        }
    }
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    SubscriptionsPerConnection,
    WatchesPerConnection,
    TopicBytes,
    GroupBytes,
    Topics,
    WatchedIds,
    Subscriptions,
    Watches,
}

impl ClientLimits {
    /// Bounds of the node's topic table.
    pub fn topic_table(&self) -> TableBounds {
        TableBounds {
            keys_max: self.topics_max,
            entries_max: self.subscriptions_max,
        }
    }

    /// Bounds of the node's presence table.
    pub fn presence_table(&self) -> TableBounds {
        TableBounds {
            keys_max: self.watched_ids_max,
            entries_max: self.watches_max,
        }
    }
}

impl Limit {
    /// The setting that holds this limit (named in the ERROR and CLOSE texts).
    pub fn setting(self) -> &'static str {
        match self {
            Limit::SubscriptionsPerConnection => "subscriptions_per_connection_max",
            Limit::WatchesPerConnection => "watches_per_connection_max",
            Limit::TopicBytes => "topic_bytes_max",
            Limit::GroupBytes => "group_bytes_max",
            Limit::Topics => "topics_max",
            Limit::WatchedIds => "watched_ids_max",
            Limit::Subscriptions => "subscriptions_max",
            Limit::Watches => "watches_max",
        }
    }

    fn value(self, limits: &ClientLimits) -> usize {
        match self {
            Limit::SubscriptionsPerConnection => limits.subscriptions_per_connection_max,
            Limit::WatchesPerConnection => limits.watches_per_connection_max,
            Limit::TopicBytes => limits.topic_bytes_max,
            Limit::GroupBytes => limits.group_bytes_max,
            Limit::Topics => limits.topics_max,
            Limit::WatchedIds => limits.watched_ids_max,
            Limit::Subscriptions => limits.subscriptions_max,
            Limit::Watches => limits.watches_max,
        }
    }
}

impl Engine<'_> {
    /// Refuses a request of the connection at `at` at `limit`: ERROR the first time, CLOSE
    /// the next. `subject` is the topic or id that was refused.
    #[cold]
    #[inline(never)]
    pub(super) fn refuse_at_limit(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        limit: Limit,
        subject: &[u8],
        out: &mut impl Output,
    ) {
        out.count(Counter::LimitRefused);
        conn.limit_refusals = conn.limit_refusals.saturating_add(1);
        let text = format!(
            "{} ({}) exceeded",
            limit.setting(),
            limit.value(&self.config.limits)
        );
        if conn.limit_refusals > 1 {
            conn.session.close();
            out.close_conn(at, CloseReason::LIMIT_EXCEEDED, text.into());
            return;
        }
        let frame = Frame::Error {
            code: ErrorCode::LIMIT_EXCEEDED,
            subject,
            text: text.as_bytes(),
        };
        out.send_frame_local(at, &frame);
    }
}

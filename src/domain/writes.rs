//! LangGraph's rules for pending-write indexes and conflicts, in one pure place.

use std::collections::BTreeMap;

use crate::domain::TypedValue;

/// The channels LangGraph writes with fixed negative indexes (`WRITES_IDX_MAP`).
const SPECIAL_CHANNELS: [(&str, i32); 4] =
    [("__error__", -1), ("__scheduled__", -2), ("__interrupt__", -3), ("__resume__", -4)];

/// What happens when a write's key (thread, namespace, checkpoint, task, idx) already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteConflict {
    /// Keep the stored row (first wins). Used unless every write is special.
    Ignore,
    /// Replace the stored row (last wins). Used when every write is special.
    Replace,
}

/// A write with the index LangGraph gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedWrite {
    /// The special channel's fixed index, or the write's position.
    pub idx: i32,
    /// The channel written.
    pub channel: String,
    /// The value written.
    pub value: TypedValue,
}

fn special_index(channel: &str) -> Option<i32> {
    SPECIAL_CHANNELS.iter().find(|(name, _)| *name == channel).map(|(_, idx)| *idx)
}

/// Indexes a task's writes as LangGraph's Postgres saver does, and picks the conflict rule.
///
/// Within one call, writes sharing an index collapse the way the database would apply them one
/// by one: the first survives under [`WriteConflict::Ignore`], the last under
/// [`WriteConflict::Replace`]. The result is sorted by index, so concurrent writers lock rows in
/// the same order and cannot deadlock each other.
pub fn index_writes(writes: Vec<(String, TypedValue)>) -> (Vec<IndexedWrite>, WriteConflict) {
    let all_special = writes.iter().all(|(channel, _)| special_index(channel).is_some());
    let conflict = if all_special { WriteConflict::Replace } else { WriteConflict::Ignore };
    let mut by_idx: BTreeMap<i32, IndexedWrite> = BTreeMap::new();
    for (position, (channel, value)) in writes.into_iter().enumerate() {
        let idx = special_index(&channel).unwrap_or_else(|| i32::try_from(position).unwrap_or(i32::MAX));
        let write = IndexedWrite { idx, channel, value };
        match conflict {
            WriteConflict::Replace => {
                by_idx.insert(idx, write);
            }
            WriteConflict::Ignore => {
                by_idx.entry(idx).or_insert(write);
            }
        }
    }
    (by_idx.into_values().collect(), conflict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(tag: &str) -> TypedValue {
        TypedValue { type_tag: "msgpack".into(), data: Some(tag.as_bytes().to_vec()) }
    }

    fn check(channels: &[&str], expected: &[(i32, &str, &str)], conflict: WriteConflict) {
        let writes = channels.iter().enumerate().map(|(i, c)| (c.to_string(), value(&i.to_string()))).collect();
        let (indexed, got_conflict) = index_writes(writes);
        let got: Vec<(i32, String, String)> = indexed
            .into_iter()
            .map(|w| (w.idx, w.channel, String::from_utf8(w.value.data.unwrap_or_default()).unwrap_or_default()))
            .collect();
        let want: Vec<(i32, String, String)> =
            expected.iter().map(|(i, c, v)| (*i, c.to_string(), v.to_string())).collect();
        assert_eq!(got, want, "channels {channels:?}");
        assert_eq!(got_conflict, conflict, "channels {channels:?}");
    }

    #[test]
    fn regular_writes_are_indexed_by_position_and_ignore_conflicts() {
        check(&["a", "b"], &[(0, "a", "0"), (1, "b", "1")], WriteConflict::Ignore);
    }

    #[test]
    fn special_channels_take_their_fixed_negative_index() {
        check(
            &["__error__", "__scheduled__", "__interrupt__", "__resume__"],
            &[(-4, "__resume__", "3"), (-3, "__interrupt__", "2"), (-2, "__scheduled__", "1"), (-1, "__error__", "0")],
            WriteConflict::Replace,
        );
    }

    #[test]
    fn a_mixed_batch_ignores_conflicts_even_for_special_channels() {
        check(&["__interrupt__", "ch2"], &[(-3, "__interrupt__", "0"), (1, "ch2", "1")], WriteConflict::Ignore);
    }

    #[test]
    fn repeated_special_channel_keeps_the_last_when_replacing() {
        check(&["__error__", "__error__"], &[(-1, "__error__", "1")], WriteConflict::Replace);
    }

    #[test]
    fn repeated_special_channel_keeps_the_first_when_ignoring() {
        check(&["__error__", "x", "__error__"], &[(-1, "__error__", "0"), (1, "x", "1")], WriteConflict::Ignore);
    }

    #[test]
    fn an_empty_batch_writes_nothing() {
        check(&[], &[], WriteConflict::Replace);
    }
}

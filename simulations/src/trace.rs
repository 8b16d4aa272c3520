//! Tracing for replaying a seed: `SIM_TRACE_ENTRY=<entry id prefix>` prints every node that
//! gains a matching entry; `SIM_TRACE_NODE=<node name>` prints that node's syncs and the
//! served entries it refuses. Both print to stderr and change nothing else.

use std::sync::OnceLock;

use cophr_protocol::EntryId;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether `id` is traced.
pub(crate) fn entry(id: &EntryId) -> bool {
    static P: OnceLock<Option<String>> = OnceLock::new();
    P.get_or_init(|| var("SIM_TRACE_ENTRY"))
        .as_ref()
        .is_some_and(|p| id.to_string().starts_with(p.as_str()))
}

/// Whether the node named `name` is traced.
pub(crate) fn node(name: &str) -> bool {
    static N: OnceLock<Option<String>> = OnceLock::new();
    N.get_or_init(|| var("SIM_TRACE_NODE"))
        .as_ref()
        .is_some_and(|n| n == name)
}

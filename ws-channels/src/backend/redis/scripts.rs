//! The Lua scripts that change Redis in one step each, loaded once; each
//! is its own file here, after the shared prelude.

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(include_str!("prelude.lua"), include_str!($file)))
    };
}

pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) join: Script,
    pub(super) leave: Script,
    pub(super) refresh: Script,
    pub(super) restore: Script,
    pub(super) members: Script,
    pub(super) summary: Script,
    pub(super) kick: Script,
    pub(super) ban: Script,
    pub(super) set_role: Script,
    pub(super) reap_node: Script,
    pub(super) publish: Script,
    pub(super) history: Script,
    pub(super) remove_history: Script,
    pub(super) recent: Script,
    pub(super) standing: Script,
    pub(super) set_if: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            create: script!("create.lua"),
            join: script!("join.lua"),
            leave: script!("leave.lua"),
            refresh: script!("refresh.lua"),
            restore: script!("restore.lua"),
            members: script!("members.lua"),
            summary: script!("summary.lua"),
            kick: script!("kick.lua"),
            ban: script!("ban.lua"),
            set_role: script!("set_role.lua"),
            reap_node: script!("reap_node.lua"),
            publish: script!("publish.lua"),
            history: script!("history.lua"),
            remove_history: script!("remove_history.lua"),
            recent: script!("recent.lua"),
            standing: script!("standing.lua"),
            set_if: script!("set_if.lua"),
        }
    }
}

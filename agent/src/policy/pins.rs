//! Pinned tool definitions: the first definition seen for (server, tool), or the pins file's,
//! is the pin; a call of a tool whose current definition differs is drift until accepted.
//! Bounded: the oldest pin is evicted (and counted) when the table is full.

use std::collections::{BTreeMap, HashMap};

use crate::mcp::ToolDef;

use super::load::PinMap;

/// One pinned tool.
#[derive(Debug, Clone)]
pub struct Pin {
    /// SHA-256 hex of the pinned definition.
    pub hash: String,
    /// The pinned definition, when it was seen (not for a hash read from the pins file
    /// until a definition with that hash is seen).
    pub def: Option<ToolDef>,
    /// The latest definition seen (what `accept` pins).
    pub current: Option<ToolDef>,
    seq: u64,
}

/// What a call's definition is, against its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// Same as pinned (or pinned now, at first sight).
    Clean,
    /// Differs: the changed fields when the pinned definition is known.
    Drift {
        pinned_hash: String,
        fields: Option<Vec<String>>,
    },
}

pub struct PinTable {
    map: HashMap<(String, String), Pin>,
    /// Insertion order, for eviction.
    order: BTreeMap<u64, (String, String)>,
    next_seq: u64,
    max: usize,
    pub evictions: u64,
}

impl PinTable {
    pub fn new(max: usize) -> Self {
        PinTable {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            max: max.max(1),
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get(&self, server: &str, tool: &str) -> Option<&Pin> {
        self.map.get(&(server.to_string(), tool.to_string()))
    }

    fn insert(&mut self, key: (String, String), mut pin: Pin) {
        if let Some(old) = self.map.remove(&key) {
            self.order.remove(&old.seq);
        } else if self.map.len() >= self.max {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.map.remove(&oldest);
                self.evictions += 1;
            }
        }
        pin.seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(pin.seq, key.clone());
        self.map.insert(key, pin);
    }

    /// A definition seen in a complete list (or a call): pins it at first sight, else
    /// remembers it as current. Returns whether a new pin was made.
    pub fn observe(&mut self, server: &str, def: &ToolDef) -> bool {
        let key = (server.to_string(), def.name.clone());
        match self.map.get_mut(&key) {
            Some(pin) => {
                if pin.def.is_none() && pin.hash == def.hash {
                    pin.def = Some(def.clone());
                }
                if pin.current.as_ref().is_none_or(|c| c.hash != def.hash) {
                    pin.current = Some(def.clone());
                }
                false
            }
            None => {
                self.insert(
                    key,
                    Pin {
                        hash: def.hash.clone(),
                        def: Some(def.clone()),
                        current: Some(def.clone()),
                        seq: 0,
                    },
                );
                true
            }
        }
    }

    /// Checks `def` (the catalogue's current definition) against its pin.
    pub fn check(&self, server: &str, def: &ToolDef) -> PinCheck {
        match self.get(server, &def.name) {
            Some(pin) if pin.hash != def.hash => PinCheck::Drift {
                pinned_hash: pin.hash.clone(),
                fields: pin.def.as_ref().map(|p| p.changed_fields(def)),
            },
            _ => PinCheck::Clean,
        }
    }

    /// Moves the pin to the current definition; false if the tool was never seen.
    pub fn accept(&mut self, server: &str, tool: &str) -> bool {
        let key = (server.to_string(), tool.to_string());
        let Some(current) = self.map.get(&key).and_then(|p| p.current.clone()) else {
            return false;
        };
        self.insert(
            key,
            Pin {
                hash: current.hash.clone(),
                def: Some(current.clone()),
                current: Some(current),
                seq: 0,
            },
        );
        true
    }

    /// Sets pins from a pins file: an entry that differs from the table replaces its pin.
    pub fn load_file_pins(&mut self, pins: &PinMap) {
        for (server, tools) in pins {
            for (tool, hash) in tools {
                let key = (server.clone(), tool.clone());
                let current = match self.map.get(&key) {
                    Some(pin) if pin.hash == *hash => continue,
                    Some(pin) => pin.current.clone(),
                    None => None,
                };
                let def = current.as_ref().filter(|c| c.hash == *hash).cloned();
                self.insert(
                    key,
                    Pin {
                        hash: hash.clone(),
                        def,
                        current,
                        seq: 0,
                    },
                );
            }
        }
    }

    /// The table as a pins file holds it.
    pub fn to_map(&self) -> PinMap {
        let mut out = PinMap::new();
        for ((server, tool), pin) in &self.map {
            out.entry(server.clone())
                .or_default()
                .insert(tool.clone(), pin.hash.clone());
        }
        out
    }
}

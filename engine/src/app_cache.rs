//! Read-model rows kept in memory so that a request does not read them from
//! the store, each tied to the app it belongs to. Every change of an app's
//! stream drops that app's rows and bumps the generation before the change is
//! answered; a row read from the store under an older generation may be
//! stale and is not kept. At most `max` rows (past it the cache starts over).

use std::collections::HashMap;
use std::hash::Hash;

use parking_lot::RwLock;
use uuid::Uuid;

pub struct AppCache<K, V> {
    state: RwLock<State<K, V>>,
    max: usize,
}

struct State<K, V> {
    generation: u64,
    rows: HashMap<K, (Uuid, V)>,
}

impl<K: Hash + Eq + Clone, V: Clone> AppCache<K, V> {
    pub fn new(max: usize) -> Self {
        AppCache { state: RwLock::new(State { generation: 0, rows: HashMap::new() }), max }
    }

    /// The cached value of `key`, or what `load` reads from the store: the
    /// value and its app, or `None` for nothing to keep (not cached).
    pub fn get_or_load<E>(&self, key: &K, load: impl FnOnce() -> Result<Option<(Uuid, V)>, E>) -> Result<Option<V>, E> {
        let generation = {
            let state = self.state.read();
            if let Some((_, v)) = state.rows.get(key) {
                return Ok(Some(v.clone()));
            }
            state.generation
        };
        let Some((app_id, value)) = load()? else { return Ok(None) };
        let mut state = self.state.write();
        if state.generation == generation {
            if state.rows.len() >= self.max {
                state.rows.clear();
            }
            state.rows.insert(key.clone(), (app_id, value.clone()));
        }
        Ok(Some(value))
    }

    /// Forgets every row of `app_id`: its stream changed.
    pub fn invalidate(&self, app_id: Uuid) {
        let mut state = self.state.write();
        state.generation += 1;
        state.rows.retain(|_, (app, _)| *app != app_id);
    }
}

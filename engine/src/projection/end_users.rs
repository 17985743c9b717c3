//! End users: one per (app, `user` string), created by the first run that names them.

use ferrify_store::{KvTxn, Projector, Record, Result};

use super::{decode, key, trees};
use crate::event::Event;
use crate::model::EndUserRow;

pub struct EndUsers;

impl Projector for EndUsers {
    fn name(&self) -> &str {
        "end_users"
    }

    fn apply(&self, record: &Record, kv: &mut KvTxn<'_>) -> Result<()> {
        if record.stream.kind() != "run" {
            return Ok(());
        }
        let env = decode(record, kv)?;
        if let Event::RunStarted(run) = &env.event {
            let k = key(&[run.app_id.as_bytes(), run.user.as_bytes()]);
            if kv.get(trees::END_USERS, &k)?.is_none() {
                let row = EndUserRow {
                    id: run.end_user_id,
                    app_id: run.app_id,
                    session_id: run.user.clone(),
                    created_at: env.at,
                };
                kv.put_json(trees::END_USERS, &k, &row)?;
                kv.put(trees::END_USERS_BY_ID, run.end_user_id.as_bytes(), k);
            }
        }
        Ok(())
    }
}

//! Nicknames for checkpoints: one nickname names one checkpoint at a time;
//! every mark, move and unmark is kept in `mark_history`.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::checkpoints::{self, CheckpointRow};
use crate::{Registry, RegistryError, now};

/// Longest nickname, in characters.
const MAX_NICKNAME: usize = 64;

/// Checks a nickname (given with or without its leading `@`) and returns
/// it without the `@`: 1 to 64 letters or digits (any script), `-`, `_`
/// or `.`, starting with a letter or digit, so that `@nick` reads the same
/// in a shell, a config file and a URL.
pub fn validate_nickname(text: &str) -> Result<&str, RegistryError> {
    let nick = text.strip_prefix('@').unwrap_or(text);
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    let problem = if nick.is_empty() {
        Some("is empty".to_string())
    } else if nick.chars().count() > MAX_NICKNAME {
        Some(format!("is longer than {MAX_NICKNAME} characters"))
    } else if !nick.starts_with(char::is_alphanumeric) {
        Some("must start with a letter or digit".to_string())
    } else {
        nick.chars()
            .find(|&c| !allowed(c))
            .map(|c| format!("has '{c}', which a nickname cannot hold"))
    };
    match problem {
        None => Ok(nick),
        Some(problem) => Err(RegistryError::Nickname(format!(
            "'{text}': the nickname {problem}; use letters, digits, '-', '_' and '.' \
             (at most {MAX_NICKNAME}), starting with a letter or digit, e.g. best-on-dataset-A"
        ))),
    }
}

/// What happened to a nickname.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkAction {
    /// Given for the first time (or again after an unmark).
    Mark,
    /// Moved from one checkpoint to another.
    Move,
    Unmark,
}

impl MarkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            MarkAction::Mark => "mark",
            MarkAction::Move => "move",
            MarkAction::Unmark => "unmark",
        }
    }
}

/// A nickname and the checkpoint it names now.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkRow {
    pub nickname: String,
    pub checkpoint: CheckpointRow,
    pub note: Option<String>,
    /// Unix seconds.
    pub marked: i64,
}

/// One entry of a nickname's history.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkEvent {
    pub id: i64,
    pub nickname: String,
    pub action: MarkAction,
    /// The checkpoint named after the event (`None` after an unmark).
    pub checkpoint_id: Option<i64>,
    /// The checkpoint named before (`None` for a first mark).
    pub previous_id: Option<i64>,
    pub note: Option<String>,
    pub at: i64,
}

fn mark_row(row: &Row) -> rusqlite::Result<MarkRow> {
    Ok(MarkRow {
        nickname: row.get(0)?,
        note: row.get(1)?,
        marked: row.get(2)?,
        checkpoint: checkpoints::checkpoint_at(row, 3)?,
    })
}

fn event_row(row: &Row) -> rusqlite::Result<MarkEvent> {
    let action: String = row.get(2)?;
    Ok(MarkEvent {
        id: row.get(0)?,
        nickname: row.get(1)?,
        action: match action.as_str() {
            "move" => MarkAction::Move,
            "unmark" => MarkAction::Unmark,
            _ => MarkAction::Mark,
        },
        checkpoint_id: row.get(3)?,
        previous_id: row.get(4)?,
        note: row.get(5)?,
        at: row.get(6)?,
    })
}

impl Registry {
    /// Gives `nick` to checkpoint `checkpoint_id`, moving it when it named
    /// another one; returns what was done. Marking the same checkpoint
    /// again only updates the note (still recorded in the history).
    pub fn mark(
        &mut self,
        nick: &str,
        checkpoint_id: i64,
        note: Option<&str>,
    ) -> Result<MarkAction, RegistryError> {
        let nick = validate_nickname(nick)?.to_string();
        self.write(|tx| mark_in(tx, &nick, checkpoint_id, note))
    }

    /// Removes `nick` (its history stays).
    pub fn unmark(&mut self, nick: &str) -> Result<(), RegistryError> {
        let nick = validate_nickname(nick)?.to_string();
        let removed = self.write(|tx| {
            let previous = current(tx, &nick)?;
            if previous.is_some() {
                tx.execute("DELETE FROM marks WHERE nickname = ?1", [&nick])?;
                history(tx, &nick, MarkAction::Unmark, None, previous, None)?;
            }
            Ok(previous.is_some())
        })?;
        if removed {
            Ok(())
        } else {
            Err(RegistryError::NoSuchMark(nick))
        }
    }

    /// The checkpoint `nick` names, when it names one.
    pub fn marked(&self, nick: &str) -> Result<Option<MarkRow>, RegistryError> {
        let nick = validate_nickname(nick)?;
        self.marks_where("m.nickname = ?1", &nick)
            .map(|rows| rows.into_iter().next())
    }

    /// Every nickname, alphabetically.
    pub fn marks(&self) -> Result<Vec<MarkRow>, RegistryError> {
        self.marks_where("?1 IS NULL", &rusqlite::types::Null)
    }

    fn marks_where(
        &self,
        condition: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Vec<MarkRow>, RegistryError> {
        let columns = checkpoints::COLUMNS;
        let sql = format!(
            "SELECT m.nickname, m.note, m.marked, {columns}
             FROM marks m JOIN checkpoints c ON c.id = m.checkpoint_id
             WHERE {condition} ORDER BY m.nickname"
        );
        let query = || -> rusqlite::Result<Vec<MarkRow>> {
            let mut stmt = self.reader().prepare(&sql)?;
            stmt.query_map([value], mark_row)?.collect()
        };
        query().map_err(|e| self.sql(e))
    }

    /// The history of `nick` (of every nickname when `None`), oldest first.
    pub fn mark_history(&self, nick: Option<&str>) -> Result<Vec<MarkEvent>, RegistryError> {
        let nick = nick.map(validate_nickname).transpose()?;
        let query = || -> rusqlite::Result<Vec<MarkEvent>> {
            let mut stmt = self.reader().prepare(
                "SELECT id, nickname, action, checkpoint_id, previous_id, note, at
                 FROM mark_history WHERE ?1 IS NULL OR nickname = ?1 ORDER BY id",
            )?;
            stmt.query_map([nick], event_row)?.collect()
        };
        query().map_err(|e| self.sql(e))
    }
}

fn mark_in(
    tx: &Transaction,
    nick: &str,
    checkpoint_id: i64,
    note: Option<&str>,
) -> rusqlite::Result<MarkAction> {
    let previous = current(tx, nick)?;
    tx.execute(
        "INSERT INTO marks (nickname, checkpoint_id, note, marked) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (nickname) DO UPDATE SET
             checkpoint_id = excluded.checkpoint_id, note = excluded.note, marked = excluded.marked",
        params![nick, checkpoint_id, note, now()],
    )?;
    let action = match previous {
        Some(p) if p != checkpoint_id => MarkAction::Move,
        _ => MarkAction::Mark,
    };
    history(tx, nick, action, Some(checkpoint_id), previous, note)?;
    Ok(action)
}

fn current(tx: &Transaction, nick: &str) -> rusqlite::Result<Option<i64>> {
    tx.query_row(
        "SELECT checkpoint_id FROM marks WHERE nickname = ?1",
        [nick],
        |r| r.get(0),
    )
    .optional()
}

fn history(
    tx: &Transaction,
    nick: &str,
    action: MarkAction,
    checkpoint_id: Option<i64>,
    previous_id: Option<i64>,
    note: Option<&str>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO mark_history (nickname, action, checkpoint_id, previous_id, note, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            nick,
            action.as_str(),
            checkpoint_id,
            previous_id,
            note,
            now()
        ],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::checkpoints::tests::checkpoint;
    use crate::concurrency_tests::temp_registry;

    #[test]
    fn nicknames_are_checked_with_a_message_that_says_what_is_allowed() {
        for good in [
            "best",
            "@best",
            "best-on-dataset-A",
            "v1.2_final",
            "最好",
            "7",
        ] {
            assert!(validate_nickname(good).is_ok(), "{good}");
        }
        assert_eq!(validate_nickname("@best").unwrap(), "best");
        for (bad, why) in [
            ("", "is empty"),
            ("@", "is empty"),
            ("-best", "must start with a letter or digit"),
            ("my best", "has ' '"),
            ("a/b", "has '/'"),
            ("a@b", "has '@'"),
        ] {
            let err = validate_nickname(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("e.g. best-on-dataset-A"), "{err}");
        }
        let long = "a".repeat(65);
        assert!(validate_nickname(&long).is_err());
        assert!(validate_nickname(&long[..64]).is_ok());
    }

    #[test]
    fn marking_again_moves_the_nickname_and_history_keeps_every_move() {
        let (_dir, mut reg) = temp_registry();
        let m = BTreeMap::new();
        let a = reg
            .record_checkpoint(&checkpoint(Path::new("/a"), "aa", &m))
            .unwrap();
        let b = reg
            .record_checkpoint(&checkpoint(Path::new("/b"), "bb", &m))
            .unwrap();
        assert_eq!(
            reg.mark("best", a, Some("first")).unwrap(),
            MarkAction::Mark
        );
        assert_eq!(
            reg.mark("@best", b, Some("better")).unwrap(),
            MarkAction::Move
        );
        assert_eq!(reg.mark("other", a, None).unwrap(), MarkAction::Mark);
        let best = reg.marked("best").unwrap().unwrap();
        assert_eq!(best.checkpoint.id, b);
        assert_eq!(best.note.as_deref(), Some("better"));
        assert_eq!(reg.marks().unwrap().len(), 2);
        reg.unmark("best").unwrap();
        assert!(reg.marked("best").unwrap().is_none());
        assert!(matches!(
            reg.unmark("best"),
            Err(RegistryError::NoSuchMark(_))
        ));
        assert_eq!(reg.mark("best", a, None).unwrap(), MarkAction::Mark);
        let events: Vec<_> = reg
            .mark_history(Some("best"))
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.checkpoint_id, e.previous_id, e.note))
            .collect();
        assert_eq!(
            events,
            [
                (MarkAction::Mark, Some(a), None, Some("first".into())),
                (MarkAction::Move, Some(b), Some(a), Some("better".into())),
                (MarkAction::Unmark, None, Some(b), None),
                (MarkAction::Mark, Some(a), None, None),
            ]
        );
        assert_eq!(reg.mark_history(None).unwrap().len(), 5);
    }

    #[test]
    fn a_mark_needs_a_recorded_checkpoint() {
        let (_dir, mut reg) = temp_registry();
        let err = reg.mark("best", 42, None).unwrap_err().to_string();
        assert!(err.contains("FOREIGN KEY"), "{err}");
        assert!(reg.marks().unwrap().is_empty());
        assert!(reg.mark_history(None).unwrap().is_empty());
    }
}

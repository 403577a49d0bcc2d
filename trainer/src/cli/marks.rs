//! `semiclass mark CKPT NICK`, `semiclass unmark NICK`, `semiclass marks`.

use std::process::ExitCode;

use clap::Args;
use semiclass_registry::{MarkAction, Registry, resolve_checkpoint, validate_nickname};
use semiclass_trainer::checkpoint::read_meta;
use semiclass_trainer::registry_hooks;

use super::table::{Table, percent, time};

#[derive(Debug, Args)]
pub struct MarkArgs {
    /// The checkpoint: a path, or @nickname.
    checkpoint: String,
    /// The nickname (letters, digits, '-', '_', '.'); then use @NICK wherever a checkpoint goes.
    nick: String,
    /// Why this checkpoint; kept in the history.
    #[arg(long)]
    note: Option<String>,
}

#[derive(Debug, Args)]
pub struct UnmarkArgs {
    /// The nickname to remove (its history stays).
    nick: String,
}

#[derive(Debug, Args)]
pub struct MarksArgs {
    /// Every mark, move and unmark, oldest first (of NICK only, when given).
    #[arg(long)]
    history: bool,
    /// With --history: only this nickname.
    #[arg(requires = "history")]
    nick: Option<String>,
}

/// Opens the registry; the commands of this file need it.
pub fn open() -> anyhow::Result<Registry> {
    registry_hooks::open_registry().map_err(anyhow::Error::msg)
}

pub fn mark(args: MarkArgs) -> anyhow::Result<ExitCode> {
    // Checked first: hashing a large checkpoint takes seconds.
    let nick = validate_nickname(&args.nick)?.to_string();
    let mut registry = open()?;
    let resolved = resolve_checkpoint(&args.checkpoint, Ok(&registry))?;
    // Only semiclass checkpoints: the metadata says what the nickname names.
    let meta = read_meta(&resolved.path)?;
    let id = registry_hooks::recorded_id(&mut registry, &resolved, &meta)?;
    let previous = registry.marked(&nick)?;
    let action = registry.mark(&nick, id, args.note.as_deref())?;
    let what = format!(
        "{} ({}, stage {}, epoch {}, val top-1 {})",
        resolved.path.display(),
        meta.model,
        meta.stage,
        meta.epoch,
        percent(meta.metrics.get("val_top1").copied())
    );
    match (action, previous) {
        (MarkAction::Move, Some(p)) => println!(
            "moved @{nick} from {} to {what}",
            p.checkpoint.path.display()
        ),
        _ => println!("marked @{nick}: {what}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn unmark(args: UnmarkArgs) -> anyhow::Result<ExitCode> {
    let mut registry = open()?;
    let nick = validate_nickname(&args.nick)?.to_string();
    let was = registry.marked(&nick)?;
    registry.unmark(&nick)?;
    if let Some(was) = was {
        println!("unmarked @{nick} (was {})", was.checkpoint.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn marks(args: MarksArgs) -> anyhow::Result<ExitCode> {
    let registry = open()?;
    if args.history {
        return history(&registry, args.nick.as_deref());
    }
    let mut table = Table::new(&[
        "nickname",
        "val top-1",
        "model",
        "stage",
        "epoch",
        "marked (UTC)",
        "checkpoint",
        "note",
    ]);
    for m in registry.marks()? {
        let c = &m.checkpoint;
        table.row(vec![
            format!("@{}", m.nickname),
            percent(c.metrics.get("val_top1").copied()),
            c.model.clone(),
            c.stage.clone(),
            c.epoch.to_string(),
            time(m.marked),
            c.path.display().to_string(),
            m.note.unwrap_or_default(),
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

fn history(registry: &Registry, nick: Option<&str>) -> anyhow::Result<ExitCode> {
    let path = |id: Option<i64>| -> anyhow::Result<String> {
        Ok(match id {
            Some(id) => registry
                .checkpoint(id)?
                .map_or_else(|| format!("#{id}"), |c| c.path.display().to_string()),
            None => "-".into(),
        })
    };
    let mut table = Table::new(&[
        "time (UTC)",
        "nickname",
        "action",
        "checkpoint",
        "before",
        "note",
    ]);
    for e in registry.mark_history(nick)? {
        table.row(vec![
            time(e.at),
            format!("@{}", e.nickname),
            e.action.as_str().to_string(),
            path(e.checkpoint_id)?,
            path(e.previous_id)?,
            e.note.unwrap_or_default(),
        ]);
    }
    print!("{}", table.render());
    Ok(ExitCode::SUCCESS)
}

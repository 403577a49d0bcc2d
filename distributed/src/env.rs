//! Where a process finds its place in a run: torchrun's environment
//! contract (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
//! `MASTER_PORT`), with Slurm's `SLURM_PROCID`/`SLURM_NTASKS`/`SLURM_LOCALID`
//! standing in for the first three under a bare `srun`.

use crate::DistError;

/// This process's place in a distributed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// A launcher already hosts the rendezvous store (torchrun's agent sets
    /// `TORCHELASTIC_USE_AGENT_STORE=True`): rank 0 must not start another.
    pub agent_store: bool,
}

impl DistEnv {
    /// Reads the process environment; `Ok(None)` when it names no
    /// distributed run (neither `RANK` nor `WORLD_SIZE`, nor a Slurm step
    /// of more than one task).
    pub fn from_env() -> Result<Option<DistEnv>, DistError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As `from_env`, reading variables through `get` (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>, DistError> {
        let Some((rank_var, world_var, local_var)) = scheme(&get) else {
            return Ok(None);
        };
        let world_size = number(&get, world_var, rank_var)?;
        let rank = number(&get, rank_var, world_var)?;
        if world_size == 0 || rank >= world_size {
            return Err(DistError::BadVar {
                var: rank_var,
                value: rank.to_string(),
                why: format!("must be below {world_var}={world_size} (and {world_var} above 0)"),
            });
        }
        let local_rank = match get(local_var) {
            Some(v) => parse(local_var, &v)?,
            None => rank,
        };
        let master_addr = required(&get, "MASTER_ADDR", rank_var)?;
        let port = required(&get, "MASTER_PORT", rank_var)?;
        let master_port = match port.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad("MASTER_PORT", &port, "expected a TCP port, 1 to 65535")),
        };
        let agent_store = get("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True");
        Ok(Some(DistEnv {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port,
            agent_store,
        }))
    }

    /// Whether this process hosts the rendezvous store.
    pub fn hosts_store(&self) -> bool {
        self.rank == 0 && !self.agent_store
    }
}

type Scheme = (&'static str, &'static str, &'static str);

/// torchrun's names when either is set; else Slurm's when the step has
/// more than one task (a one-task `srun` is a plain run).
fn scheme(get: &impl Fn(&str) -> Option<String>) -> Option<Scheme> {
    if get("RANK").is_some() || get("WORLD_SIZE").is_some() {
        return Some(("RANK", "WORLD_SIZE", "LOCAL_RANK"));
    }
    let tasks = get("SLURM_NTASKS")?.trim().parse::<usize>().ok()?;
    (tasks > 1 && get("SLURM_PROCID").is_some()).then_some((
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "SLURM_LOCALID",
    ))
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    other: &'static str,
) -> Result<usize, DistError> {
    let value = get(var).ok_or(DistError::MissingVar { var, set: other })?;
    parse(var, &value)
}

fn required(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    set: &'static str,
) -> Result<String, DistError> {
    match get(var) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(DistError::MissingVar { var, set }),
    }
}

fn parse(var: &'static str, value: &str) -> Result<usize, DistError> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(var, value, "expected a whole number"))
}

fn bad(var: &'static str, value: &str, why: &str) -> DistError {
    DistError::BadVar {
        var,
        value: value.to_string(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<DistEnv>, DistError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistEnv::from_lookup(|k| map.get(k).cloned())
    }

    const FULL: [(&str, &str); 5] = [
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "0"),
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "29500"),
    ];

    #[test]
    fn torchrun_variables_are_read() {
        let e = env(&FULL).unwrap().unwrap();
        assert_eq!((e.rank, e.world_size, e.local_rank), (1, 2, 0));
        assert_eq!((e.master_addr.as_str(), e.master_port), ("10.0.0.1", 29500));
        assert!(!e.hosts_store());
    }

    #[test]
    fn no_variables_is_a_single_process_run() {
        assert_eq!(env(&[]).unwrap(), None);
        assert_eq!(
            env(&[("SLURM_NTASKS", "1"), ("SLURM_PROCID", "0")]).unwrap(),
            None
        );
    }

    #[test]
    fn world_size_without_rank_names_rank() {
        let err = env(&[("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(
            err.starts_with("RANK is not set but WORLD_SIZE is"),
            "{err}"
        );
    }

    #[test]
    fn missing_master_and_bad_numbers_are_named() {
        let err = env(&FULL[..3]).unwrap_err().to_string();
        assert!(err.starts_with("MASTER_ADDR is not set"), "{err}");
        let mut bad_port = FULL;
        bad_port[4] = ("MASTER_PORT", "99999");
        let err = env(&bad_port).unwrap_err().to_string();
        assert!(err.starts_with("MASTER_PORT=99999"), "{err}");
        let mut bad_rank = FULL;
        bad_rank[0] = ("RANK", "2");
        let err = env(&bad_rank).unwrap_err().to_string();
        assert!(
            err.starts_with("RANK=2: must be below WORLD_SIZE=2"),
            "{err}"
        );
    }

    #[test]
    fn slurm_steps_and_torchrun_agent_store() {
        let e = env(&[
            ("SLURM_NTASKS", "4"),
            ("SLURM_PROCID", "0"),
            ("SLURM_LOCALID", "0"),
            ("MASTER_ADDR", "node1"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((e.rank, e.world_size), (0, 4));
        assert!(e.hosts_store());
        let mut agent = FULL.to_vec();
        agent[0] = ("RANK", "0");
        agent.push(("TORCHELASTIC_USE_AGENT_STORE", "True"));
        assert!(!env(&agent).unwrap().unwrap().hosts_store());
    }
}

//! Reads the fingerprint of the machine we run on from Linux's files.
//! Each component is optional: what cannot be read (a file only root may
//! read, a container without DMI) is left out, and only "nothing at all"
//! is an error.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use semiclass_manifest::package::Target;

use super::{ComponentKind, Fingerprint, FingerprintError, FingerprintSource};

/// The fingerprint of the running machine.
#[derive(Debug, Clone)]
pub struct SystemProbe {
    /// Prefix of `/etc`, `/sys`, ...; `/` except in tests.
    root: PathBuf,
    /// The `nvidia-smi` program, run for CUDA targets.
    nvidia_smi: PathBuf,
}

impl Default for SystemProbe {
    fn default() -> Self {
        SystemProbe {
            root: PathBuf::from("/"),
            nvidia_smi: PathBuf::from("nvidia-smi"),
        }
    }
}

impl SystemProbe {
    /// A probe that reads below `root` instead of `/` and runs `nvidia_smi`
    /// for GPU uuids (for tests with a fake machine).
    pub fn with_root(root: impl Into<PathBuf>, nvidia_smi: impl Into<PathBuf>) -> SystemProbe {
        SystemProbe {
            root: root.into(),
            nvidia_smi: nvidia_smi.into(),
        }
    }

    /// Every identifier that can be read, raw (not yet hashed).
    fn raw_components(&self, target: Target) -> Vec<(ComponentKind, String)> {
        let mut found = Vec::new();
        let machine_id = ["etc/machine-id", "var/lib/dbus/machine-id"]
            .iter()
            .find_map(|p| self.read(p));
        found.extend(machine_id.map(|id| (ComponentKind::MachineId, id)));
        found.extend(
            self.read("sys/class/dmi/id/product_uuid")
                .map(|id| (ComponentKind::ProductUuid, id)),
        );
        found.extend(
            physical_macs(&self.root.join("sys/class/net"))
                .into_iter()
                .map(|m| (ComponentKind::Mac, m)),
        );
        if target == Target::CudaX86_64 {
            found.extend(
                gpu_uuids(&self.nvidia_smi)
                    .into_iter()
                    .map(|g| (ComponentKind::GpuUuid, g)),
            );
        }
        found
    }

    /// A trimmed, non-empty file below the root; `None` when unreadable.
    fn read(&self, relative: &str) -> Option<String> {
        non_empty(fs::read_to_string(self.root.join(relative)).ok()?)
    }
}

impl FingerprintSource for SystemProbe {
    fn fingerprint(&self, target: Target) -> Result<Fingerprint, FingerprintError> {
        let raw = self.raw_components(target);
        Fingerprint::from_raw(capped(&raw).map(|(kind, value)| (*kind, value.as_str())))
    }
}

/// The first components of each kind, as many as a fingerprint may hold
/// (`raw` lists each kind's values sorted, so the same ones are kept on
/// every run).
fn capped(raw: &[(ComponentKind, String)]) -> impl Iterator<Item = &(ComponentKind, String)> + '_ {
    raw.iter()
        .enumerate()
        .filter(|(i, (kind, _))| {
            let before = raw[..*i].iter().filter(|(k, _)| k == kind).count();
            before < kind.max_per_machine()
        })
        .map(|(_, component)| component)
}

fn non_empty(text: String) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// MACs of interfaces backed by a device (not `lo`, bridges, veth, ...)
/// whose address is the hardware's own: random or user-set addresses
/// change at will, so they would not identify the machine.
fn physical_macs(net: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(net) else {
        return Vec::new();
    };
    let mut macs: Vec<String> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|iface| iface.join("device").exists())
        .filter(|iface| {
            let assign = fs::read_to_string(iface.join("addr_assign_type")).unwrap_or_default();
            // 1: random, 3: set by userspace (see Linux's if_addr_assign_type).
            !matches!(assign.trim(), "1" | "3")
        })
        .filter_map(|iface| non_empty(fs::read_to_string(iface.join("address")).ok()?))
        .filter(|mac| mac.chars().any(|c| c != '0' && c != ':'))
        .collect();
    macs.sort();
    macs
}

/// GPU uuids from `nvidia-smi -L` (`GPU 0: NVIDIA H200 (UUID: GPU-...)`);
/// none when the program is missing or fails.
fn gpu_uuids(nvidia_smi: &Path) -> Vec<String> {
    let Ok(output) = Command::new(nvidia_smi).arg("-L").output() else {
        return Vec::new();
    };
    if !output.status.success() {
        return Vec::new();
    }
    let mut uuids = parse_gpu_list(&String::from_utf8_lossy(&output.stdout));
    uuids.sort();
    uuids
}

/// Whole GPUs only: MIG slices get new uuids whenever they are reconfigured.
fn parse_gpu_list(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|line| line.starts_with("GPU "))
        .filter_map(|line| {
            line.split_once("(UUID: ")?
                .1
                .split_once(')')
                .map(|(uuid, _)| uuid.trim().to_string())
        })
        .filter(|uuid| !uuid.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// A fake machine: machine-id, one physical NIC, a random-MAC NIC, `lo`.
    fn fake_machine(root: &Path) {
        write(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        write(root, "sys/class/net/eth0/address", "52:54:00:12:34:56\n");
        write(root, "sys/class/net/eth0/addr_assign_type", "0\n");
        fs::create_dir_all(root.join("sys/class/net/eth0/device")).unwrap();
        write(root, "sys/class/net/wlan0/address", "aa:bb:cc:dd:ee:ff\n");
        write(root, "sys/class/net/wlan0/addr_assign_type", "1\n");
        fs::create_dir_all(root.join("sys/class/net/wlan0/device")).unwrap();
        write(root, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
    }

    fn fake_nvidia_smi(dir: &Path) -> PathBuf {
        let script = dir.join("nvidia-smi");
        let listing = "GPU 0: NVIDIA H200 (UUID: GPU-5f3c1a2b-0000-1111-2222-333344445555)";
        fs::write(&script, format!("#!/bin/sh\necho '{listing}'\n")).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[test]
    fn reads_machine_id_and_physical_macs_only() {
        let dir = tempfile::tempdir().unwrap();
        fake_machine(dir.path());
        let probe = SystemProbe::with_root(dir.path(), dir.path().join("no-nvidia-smi"));
        let raw = probe.raw_components(Target::CudaX86_64);
        assert_eq!(
            raw,
            vec![
                (
                    ComponentKind::MachineId,
                    "0123456789abcdef0123456789abcdef".to_string()
                ),
                (ComponentKind::Mac, "52:54:00:12:34:56".to_string()),
            ]
        );
    }

    #[test]
    fn a_machine_with_many_nics_keeps_the_first_four_macs() {
        let dir = tempfile::tempdir().unwrap();
        fake_machine(dir.path());
        for i in 1..=6 {
            let nic = format!("sys/class/net/eth{i}");
            write(
                dir.path(),
                &format!("{nic}/address"),
                &format!("52:54:00:00:00:0{i}\n"),
            );
            fs::create_dir_all(dir.path().join(nic).join("device")).unwrap();
        }
        let probe = SystemProbe::with_root(dir.path(), dir.path().join("no-nvidia-smi"));
        let fingerprint = probe.fingerprint(Target::CpuX86_64).unwrap();
        let macs: Vec<_> = [
            "52:54:00:00:00:01",
            "52:54:00:00:00:02",
            "52:54:00:00:00:03",
            "52:54:00:00:00:04",
        ]
        .map(|m| super::super::Component::from_raw(ComponentKind::Mac, m))
        .into();
        let kept: Vec<_> = fingerprint
            .components()
            .iter()
            .filter(|c| c.kind == ComponentKind::Mac)
            .cloned()
            .collect();
        assert_eq!(kept.len(), 4);
        assert!(
            macs.iter().all(|m| kept.contains(m)),
            "the sorted first four"
        );
    }

    #[test]
    fn gpu_uuids_count_for_cuda_targets_only() {
        let dir = tempfile::tempdir().unwrap();
        fake_machine(dir.path());
        let probe = SystemProbe::with_root(dir.path(), fake_nvidia_smi(dir.path()));
        let gpu = (
            ComponentKind::GpuUuid,
            "GPU-5f3c1a2b-0000-1111-2222-333344445555".to_string(),
        );
        assert!(probe.raw_components(Target::CudaX86_64).contains(&gpu));
        assert!(!probe.raw_components(Target::CpuX86_64).contains(&gpu));
        assert_eq!(
            probe
                .fingerprint(Target::CudaX86_64)
                .unwrap()
                .components()
                .len(),
            3
        );
    }

    #[test]
    fn an_empty_machine_says_what_it_tried() {
        let dir = tempfile::tempdir().unwrap();
        let probe = SystemProbe::with_root(dir.path(), dir.path().join("no-nvidia-smi"));
        assert_eq!(
            probe.fingerprint(Target::CpuX86_64),
            Err(FingerprintError::NoComponents)
        );
    }

    #[test]
    fn parses_several_gpus_but_no_mig_slices() {
        let listing = "GPU 0: A (UUID: GPU-aaa)\nGPU 1: B (UUID: GPU-bbb)\n  MIG 1g.10gb Device 0: (UUID: MIG-ccc)\nNo devices\n";
        assert_eq!(parse_gpu_list(listing), vec!["GPU-aaa", "GPU-bbb"]);
    }
}

//! Machine fingerprints: several identifiers of a machine, each hashed with
//! an application key so that no raw identifier (machine-id, MAC address)
//! is ever written to a request or a license. A license binds a set of them
//! with a rule "at least k of n", so replacing one part (a network card)
//! does not lock the user out while a different machine still fails.

mod system;

use hmac::{Hmac, Mac};
use semiclass_manifest::package::Target;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::digest::{hex, is_sha256_hex};

pub use system::SystemProbe;

/// Keys the component hashes: the same machine gives the same hashes to
/// every semiclass SDK, and a hash cannot be looked up in a table of
/// plain sha256s of MAC addresses.
const APPLICATION_KEY: &[u8] = b"semiclass machine fingerprint v1";

/// What a component identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    /// `/etc/machine-id`: set at OS install.
    MachineId,
    /// DMI product uuid: set by the board vendor (often readable by root only).
    ProductUuid,
    /// The MAC address of one physical network interface.
    Mac,
    /// The UUID of one NVIDIA GPU (CUDA targets only).
    GpuUuid,
}

impl ComponentKind {
    /// The most components of this kind one machine may name. A cap keeps
    /// a request from naming another machine's identifiers beside its own
    /// (the activation check is a majority, which extra components would
    /// sway); a real machine has one machine-id and one board uuid, and the
    /// probe keeps its first MACs and GPUs in sorted order.
    pub fn max_per_machine(self) -> usize {
        match self {
            ComponentKind::MachineId | ComponentKind::ProductUuid => 1,
            ComponentKind::Mac => 4,
            ComponentKind::GpuUuid => 8,
        }
    }

    pub(crate) fn tag(self) -> &'static str {
        match self {
            ComponentKind::MachineId => "machine-id",
            ComponentKind::ProductUuid => "product-uuid",
            ComponentKind::Mac => "mac",
            ComponentKind::GpuUuid => "gpu-uuid",
        }
    }
}

/// One hashed machine identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub kind: ComponentKind,
    /// HMAC-SHA256 of the identifier under the application key, lowercase hex.
    pub hash: String,
}

impl Component {
    /// Hashes a raw identifier; case and surrounding space do not matter.
    pub fn from_raw(kind: ComponentKind, raw: &str) -> Component {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(APPLICATION_KEY).expect("hmac takes any key length");
        mac.update(kind.tag().as_bytes());
        mac.update(b"\0");
        mac.update(raw.trim().to_ascii_lowercase().as_bytes());
        Component {
            kind,
            hash: hex(&mac.finalize().into_bytes()),
        }
    }
}

/// Why no fingerprint could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    #[error(
        "no machine identifier could be read (machine-id in /etc/machine-id or /var/lib/dbus/machine-id, \
         /sys/class/dmi/id/product_uuid, MAC addresses in /sys/class/net/*/address): activation needs at \
         least one; in a container, mount the host's /etc/machine-id read-only"
    )]
    NoComponents,
    #[error("fingerprint component {index}: hash is not 64 lowercase hex digits")]
    BadHash { index: usize },
    #[error("the fingerprint names {count} components of kind {kind}, more than one machine has ({max})", kind = kind.tag())]
    TooMany {
        kind: ComponentKind,
        count: usize,
        max: usize,
    },
}

/// The identifiers of one machine, sorted and without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    components: Vec<Component>,
}

impl Fingerprint {
    /// A fingerprint from already hashed components (e.g. from a request).
    pub fn from_components(
        mut components: Vec<Component>,
    ) -> Result<Fingerprint, FingerprintError> {
        if let Some(index) = components.iter().position(|c| !is_sha256_hex(&c.hash)) {
            return Err(FingerprintError::BadHash { index });
        }
        components.sort();
        components.dedup();
        if components.is_empty() {
            return Err(FingerprintError::NoComponents);
        }
        for kind in components.iter().map(|c| c.kind) {
            let count = components.iter().filter(|c| c.kind == kind).count();
            let max = kind.max_per_machine();
            if count > max {
                return Err(FingerprintError::TooMany { kind, count, max });
            }
        }
        Ok(Fingerprint { components })
    }

    /// A fingerprint from raw identifiers, hashed here.
    pub fn from_raw<'a>(
        raw: impl IntoIterator<Item = (ComponentKind, &'a str)>,
    ) -> Result<Fingerprint, FingerprintError> {
        let components = raw
            .into_iter()
            .map(|(kind, value)| Component::from_raw(kind, value))
            .collect();
        Fingerprint::from_components(components)
    }

    /// The hashed components, sorted.
    pub fn components(&self) -> &[Component] {
        &self.components
    }
}

/// Where a fingerprint comes from: the real machine ([`SystemProbe`]) or,
/// in tests, a fixed [`Fingerprint`].
pub trait FingerprintSource {
    /// The fingerprint of this machine for a package built for `target`.
    fn fingerprint(&self, target: Target) -> Result<Fingerprint, FingerprintError>;
}

impl FingerprintSource for Fingerprint {
    fn fingerprint(&self, _target: Target) -> Result<Fingerprint, FingerprintError> {
        Ok(self.clone())
    }
}

/// The machine a license is bound to: its components and how many of them
/// must still be present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineBinding {
    pub components: Vec<Component>,
    pub min_matches: usize,
}

impl MachineBinding {
    /// Binds to `fingerprint` by "most": more than half of its components
    /// must match (2 of 3, 3 of 4, all of 1 or 2).
    pub fn most(fingerprint: &Fingerprint) -> MachineBinding {
        let components = fingerprint.components().to_vec();
        let min_matches = components.len() / 2 + 1;
        MachineBinding {
            components,
            min_matches,
        }
    }

    /// How many of the bound components `fingerprint` has.
    pub fn matches(&self, fingerprint: &Fingerprint) -> usize {
        self.components
            .iter()
            .filter(|c| fingerprint.components.binary_search(c).is_ok())
            .count()
    }

    /// Whether `fingerprint` is the bound machine. A binding that asks for
    /// no match at all accepts nothing, so a crafted rule cannot open it.
    pub fn accepts(&self, fingerprint: &Fingerprint) -> bool {
        self.min_matches >= 1 && self.matches(fingerprint) >= self.min_matches
    }
}

impl Fingerprint {
    /// Whether `self` and `other` are the same machine both ways: most of
    /// each one's components are among the other's. The issuer recognises
    /// a machine activating again by this, never by one direction alone: a
    /// request that adds a bound machine's components to its own would
    /// pass "most of the bound components are here" but not "most of mine
    /// are bound".
    pub fn same_machine(&self, other: &Fingerprint) -> bool {
        MachineBinding::most(self).accepts(other) && MachineBinding::most(other).accepts(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(values: &[(ComponentKind, &str)]) -> Fingerprint {
        Fingerprint::from_raw(values.iter().copied()).unwrap()
    }

    const A: [(ComponentKind, &str); 3] = [
        (ComponentKind::MachineId, "4c4c4544004e3610804bc4c04f4b3132"),
        (ComponentKind::Mac, "52:54:00:12:34:56"),
        (ComponentKind::Mac, "52:54:00:ab:cd:ef"),
    ];

    #[test]
    fn hashes_hide_and_normalise_the_raw_value() {
        let a = Component::from_raw(ComponentKind::Mac, "52:54:00:AB:CD:EF\n");
        assert_eq!(
            a,
            Component::from_raw(ComponentKind::Mac, "52:54:00:ab:cd:ef")
        );
        assert!(is_sha256_hex(&a.hash) && !a.hash.contains("5254"));
        // The kind is part of the hash: a MAC is not a GPU uuid.
        assert_ne!(
            a.hash,
            Component::from_raw(ComponentKind::GpuUuid, "52:54:00:ab:cd:ef").hash
        );
    }

    #[test]
    fn one_changed_component_of_three_still_matches() {
        let binding = MachineBinding::most(&machine(&A));
        assert_eq!(binding.min_matches, 2);
        let mut new_nic = A;
        new_nic[2].1 = "52:54:00:99:99:99";
        assert!(binding.accepts(&machine(&new_nic)));
        let mut two_changed = new_nic;
        two_changed[0].1 = "ffffffffffffffffffffffffffffffff";
        assert_eq!(binding.matches(&machine(&two_changed)), 1);
        assert!(!binding.accepts(&machine(&two_changed)));
    }

    #[test]
    fn the_same_machine_matches_both_ways_and_a_merged_one_does_not() {
        let laptop = machine(&A);
        let mut new_nic = A;
        new_nic[2].1 = "52:54:00:99:99:99";
        assert!(laptop.same_machine(&machine(&new_nic)));
        // Another machine's two MACs beside two of the laptop's components:
        // most of the laptop's are there, but not most of its own.
        let merged = machine(&[
            A[0],
            A[1],
            (ComponentKind::Mac, "aa"),
            (ComponentKind::Mac, "bb"),
        ]);
        assert!(MachineBinding::most(&laptop).accepts(&merged));
        assert!(!laptop.same_machine(&merged) && !merged.same_machine(&laptop));
    }

    #[test]
    fn more_components_of_a_kind_than_a_machine_has_are_refused() {
        let two_ids = [
            (ComponentKind::MachineId, "one"),
            (ComponentKind::MachineId, "two"),
        ];
        let err = Fingerprint::from_raw(two_ids).unwrap_err();
        assert_eq!(
            err,
            FingerprintError::TooMany {
                kind: ComponentKind::MachineId,
                count: 2,
                max: 1
            }
        );
        assert!(
            err.to_string().contains("2 components of kind machine-id"),
            "{err}"
        );
        let macs: Vec<String> = (0..5).map(|i| format!("52:54:00:00:00:0{i}")).collect();
        let five = macs.iter().map(|m| (ComponentKind::Mac, m.as_str()));
        assert!(Fingerprint::from_raw(five.clone().take(4)).is_ok());
        assert!(Fingerprint::from_raw(five).is_err());
    }

    #[test]
    fn a_binding_that_asks_for_nothing_accepts_nothing() {
        let mut binding = MachineBinding::most(&machine(&A));
        binding.min_matches = 0;
        assert!(!binding.accepts(&machine(&A)));
    }

    #[test]
    fn empty_or_malformed_fingerprints_are_refused() {
        assert_eq!(
            Fingerprint::from_components(vec![]),
            Err(FingerprintError::NoComponents)
        );
        let bad = Component {
            kind: ComponentKind::Mac,
            hash: "xyz".into(),
        };
        assert_eq!(
            Fingerprint::from_components(vec![bad]),
            Err(FingerprintError::BadHash { index: 0 })
        );
        let message = FingerprintError::NoComponents.to_string();
        assert!(
            message.contains("/etc/machine-id") && message.contains("container"),
            "{message}"
        );
    }
}

//! The activation limit holds when many activations arrive at once (the
//! server answers `/v1/activate` from many threads).

use std::thread;

use semiclass_license_issuer::IssuerError;
use semiclass_licensing::ActivationRequest;

use crate::common::{NOW, Vendor, machine, machine_key};

#[test]
fn concurrent_activations_never_exceed_the_limit() {
    let vendor = Vendor::new();
    let pkg_a = vendor.package("pkg-a", b"model a");
    let serial = vendor.mint(&pkg_a.id, 3, None);
    let requests: Vec<ActivationRequest> = (0..12)
        .map(|i| {
            let machine = machine(&format!("m{i}"), "eth");
            ActivationRequest::new(serial, &pkg_a.id, &machine, &machine_key(), NOW)
        })
        .collect();
    let results: Vec<Result<String, IssuerError>> = thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|r| scope.spawn(|| vendor.issuer.activate(r, NOW)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let granted = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Some("activation_limit")))
        .count();
    assert_eq!((granted, refused), (3, 9), "{results:?}");
    assert_eq!(vendor.db().list(None).unwrap()[0].activations, 3);
}

#[test]
fn concurrent_re_activations_of_one_machine_take_one_slot() {
    let vendor = Vendor::new();
    let pkg_a = vendor.package("pkg-a", b"model a");
    let serial = vendor.mint(&pkg_a.id, 2, None);
    let laptop = machine("laptop", "eth");
    let requests: Vec<ActivationRequest> = (0..8)
        .map(|_| ActivationRequest::new(serial, &pkg_a.id, &laptop, &machine_key(), NOW))
        .collect();
    thread::scope(|scope| {
        for request in &requests {
            scope.spawn(|| vendor.issuer.activate(request, NOW).unwrap());
        }
    });
    assert_eq!(vendor.db().list(None).unwrap()[0].activations, 1);
}

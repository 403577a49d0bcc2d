//! `POST /v1/activate` in front of the issuer library.

use std::sync::Arc;

use axum::http::StatusCode;
use semiclass_license_issuer::{IssuerDb, MintSpec};
use semiclass_licensing::fingerprint::ComponentKind;
use semiclass_licensing::sealing::box_keypair;
use semiclass_licensing::{
    ActivationRequest, Fingerprint, Keyring, Serial, SignedLicense, unix_now,
};
use semiclass_serve::activate::ActivateResponse;
use semiclass_serve::{AppState, app};

use crate::common::*;

/// A server with an issuer that sells the large package one activation per serial.
struct Vendor {
    /// Holds the folder of the packages and the issuer.
    fixture: Fixture,
    app: axum::Router,
    keyring: Keyring,
    serial: Serial,
}

impl Vendor {
    fn new() -> Vendor {
        let fixture = Fixture::new();
        let mut config = fixture.config();
        let (keyring, db) = fixture.add_issuer(&mut config);
        let mut issuer_db = IssuerDb::open(&db).unwrap();
        let package = semiclass_package::Package::open(&fixture.large).unwrap();
        issuer_db.add_package(&package, unix_now()).unwrap();
        let spec = MintSpec {
            package_id: fixture.large_id().into(),
            max_activations: 1,
            expires: None,
        };
        let serial = issuer_db.mint(&spec, 1, unix_now()).unwrap()[0];
        let app = app(Arc::new(AppState::load(&config).unwrap()));
        Vendor {
            fixture,
            app,
            keyring,
            serial,
        }
    }

    async fn activate(&self, body: String, content_type: &str) -> (StatusCode, axum::body::Bytes) {
        // No token: the serial is the credential.
        let request = axum::http::Request::post("/v1/activate")
            .header("content-type", content_type)
            .body(axum::body::Body::from(body))
            .unwrap();
        let (status, _, body) = send(&self.app, request).await;
        (status, body)
    }
}

fn machine(name: &str) -> Fingerprint {
    Fingerprint::from_raw([
        (ComponentKind::MachineId, format!("id-{name}").as_str()),
        (ComponentKind::Mac, &format!("mac-{name}")),
    ])
    .unwrap()
}

#[tokio::test]
async fn a_serial_activates_once_and_the_license_verifies() {
    let vendor = Vendor::new();
    let request = ActivationRequest::new(
        vendor.serial,
        vendor.fixture.large_id(),
        &machine("a"),
        &box_keypair().1,
        unix_now(),
    );
    let (status, body) = vendor.activate(request.to_json(), "application/json").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: ActivateResponse = serde_json::from_slice(&body).unwrap();
    let payload = SignedLicense::from_armored(&answer.license)
        .unwrap()
        .verify(&vendor.keyring)
        .unwrap();
    assert_eq!(
        (payload.serial, payload.package_id.as_str()),
        (vendor.serial, vendor.fixture.large_id())
    );
    assert_eq!(payload.nonce, request.nonce);

    let other = ActivationRequest::new(
        vendor.serial,
        vendor.fixture.large_id(),
        &machine("b"),
        &box_keypair().1,
        unix_now(),
    );
    let (status, body) = vendor.activate(other.to_json(), "application/json").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::FORBIDDEN, "activation_limit")
    );
    let wrong_package = ActivationRequest::new(
        vendor.serial,
        vendor.fixture.small_id(),
        &machine("a"),
        &box_keypair().1,
        unix_now(),
    );
    let (status, body) = vendor
        .activate(wrong_package.to_json(), "application/json")
        .await;
    assert_eq!(
        (status.as_u16(), error_code(&body).as_str()),
        (403, "wrong_package")
    );
}

#[tokio::test]
async fn bad_activation_requests_get_4xx_with_codes() {
    let vendor = Vendor::new();
    let unknown = Serial::from_entropy(&[7; 12]);
    let request = ActivationRequest::new(
        unknown,
        vendor.fixture.large_id(),
        &machine("a"),
        &box_keypair().1,
        unix_now(),
    );
    let (status, body) = vendor.activate(request.to_json(), "application/json").await;
    assert_eq!(
        (status.as_u16(), error_code(&body).as_str()),
        (404, "unknown_serial")
    );
    let (status, body) = vendor
        .activate("{\"serial\": 1}".into(), "application/json")
        .await;
    assert_eq!(
        (status.as_u16(), error_code(&body).as_str()),
        (400, "bad_request")
    );
    let (status, body) = vendor.activate(request.to_json(), "text/plain").await;
    assert_eq!(
        (status.as_u16(), error_code(&body).as_str()),
        (415, "unsupported_media_type")
    );
    let (status, body) = vendor
        .activate("x".repeat(100 << 10), "application/json")
        .await;
    assert_eq!(
        (status.as_u16(), error_code(&body).as_str()),
        (413, "body_too_large")
    );
}

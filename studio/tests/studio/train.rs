//! The training form: generated from the schema, checked as the CLI checks.

use axum::http::StatusCode;
use semiclass_registry::JobStatus;

use crate::common::{TestStudio, add_dataset, two_class_dataset};

#[tokio::test]
async fn the_form_shows_every_parameter_with_its_default() {
    let data = two_class_dataset();
    let t = TestStudio::logged_in().await;
    let id = add_dataset(&t, data.path()).await;
    let page = t.get(&format!("/train/new?dataset={id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    for field in [
        r#"name="large.ssl.p_cutoff" value="0.95""#,
        r#"name="small.lr" value="0.05""#,
        r#"name="small.distill.t" value="4.0""#,
        r#"name="large.epochs" value="""#,
        r#"name="large.model""#,
        r#"value="resnet18" selected"#,
    ] {
        assert!(page.body.contains(field), "{field} missing");
    }
    assert!(
        !page.body.contains(r#"name="run.dir""#),
        "the studio sets run.dir"
    );
}

#[tokio::test]
async fn invalid_values_get_the_clis_messages_and_queue_nothing() {
    let data = two_class_dataset();
    let t = TestStudio::logged_in().await;
    let id = add_dataset(&t, data.path()).await;
    let id = id.to_string();
    let cases: [(&[(&str, &str)], &str); 4] = [
        // serde names the section of a flattened key, as `semiclass train` does.
        (&[("large.epochs", "many")], "expected usize"),
        (&[("large.ssl.algorithm", "mixmatch")], "fixmatch"),
        (&[("large.epoch", "2")], "did you mean 'large.epochs'?"),
        (
            &[("large.input_size", "8")],
            "large.input_size: input size 8",
        ),
    ];
    for (fields, expected) in cases {
        let mut form = vec![("mode", "large"), ("dataset", id.as_str())];
        form.extend_from_slice(fields);
        for path in ["/train/preview", "/train"] {
            let answer = t.post_form(path, &form).await;
            assert_eq!(
                answer.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{fields:?}"
            );
            assert!(
                answer.body.contains(expected),
                "{fields:?}: {}",
                answer.body
            );
        }
    }
    let small = t
        .post_form("/train", &[("mode", "small"), ("dataset", &id)])
        .await;
    assert_eq!(small.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(small.body.contains("needs a teacher"), "{}", small.body);
    assert!(
        t.registry().jobs().unwrap().is_empty(),
        "nothing was queued"
    );
}

#[tokio::test]
async fn a_valid_form_shows_the_resolved_yaml_and_queues_a_job() {
    let data = two_class_dataset();
    let t = TestStudio::logged_in().await;
    let id = add_dataset(&t, data.path()).await.to_string();
    let form = [
        ("mode", "joint"),
        ("dataset", id.as_str()),
        ("large.epochs", "3"),
        ("large.lr", "0.03"),
    ];
    let preview = t.post_form("/train/preview", &form).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(preview.body.contains("epochs: 3"), "{}", preview.body);
    assert!(
        preview.body.contains("-o large.epochs=3"),
        "{}",
        preview.body
    );
    assert!(
        !preview.body.contains("large.lr="),
        "an unchanged default is no override"
    );
    let queued = t.post_form("/train", &form).await;
    assert_eq!(queued.status, StatusCode::OK, "{}", queued.body);
    assert_eq!(queued.headers["hx-redirect"], "/jobs/1");
    let job = t.registry().job(1).unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    let args = job.args.join(" ");
    assert!(args.contains("train --mode joint --data "), "{args}");
    assert!(args.contains("-o large.epochs=3"), "{args}");
    assert!(
        job.run_dir.starts_with(t.dir.path()),
        "runs go to the studio's folder"
    );
    let page = t.get("/jobs/1").await;
    assert!(page.body.contains("queued"), "{}", page.body);
}

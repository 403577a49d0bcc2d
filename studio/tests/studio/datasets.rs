//! Adding a dataset folder: its check report as a page; bad paths refused.

use axum::http::StatusCode;

use crate::common::{TestStudio, add_dataset, snapshot, two_class_dataset};

#[tokio::test]
async fn a_dataset_is_checked_and_its_report_shown_without_writing_into_it() {
    let data = two_class_dataset();
    let before = snapshot(data.path());
    let t = TestStudio::logged_in().await;
    let id = add_dataset(&t, data.path()).await;
    let page = t.get(&format!("/datasets/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    for text in [
        "passed",
        "dark",
        "bright",
        "train 16 labeled",
        "train_unlabeled 16",
        "val 8",
    ] {
        assert!(page.body.contains(text), "{text} missing: {}", page.body);
    }
    let png = t.get(&format!("/datasets/{id}/histogram.png")).await;
    assert_eq!(png.status, StatusCode::OK);
    assert_eq!(png.headers["content-type"], "image/png");
    assert_eq!(
        snapshot(data.path()),
        before,
        "the dataset folder was written to"
    );
    let list = t.get("/datasets").await;
    assert!(list.body.contains(data.path().to_str().unwrap()));
}

#[tokio::test]
async fn every_problem_is_listed_with_its_file_and_line() {
    let data = two_class_dataset();
    let train = std::fs::read_to_string(data.path().join("train.txt")).unwrap();
    let broken = train.replacen("images/t1.png 1", "images/missing.png 1", 1) + "images/t2.png 7\n";
    std::fs::write(data.path().join("train.txt"), broken).unwrap();
    let t = TestStudio::logged_in().await;
    let id = add_dataset(&t, data.path()).await;
    let page = t.get(&format!("/datasets/{id}")).await;
    assert!(page.body.contains("errors"), "{}", page.body);
    assert!(page.body.contains("train.txt:2: error:"), "{}", page.body);
    assert!(page.body.contains("train.txt:17: error:"), "{}", page.body);
    assert!(!t.registry().dataset(id).unwrap().unwrap().check_pass);
    // A dataset with errors cannot be trained on.
    let answer = t
        .post_form(
            "/train/preview",
            &[("mode", "large"), ("dataset", &id.to_string())],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer.body.contains("fix them and check it again"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_path_that_is_no_dataset_is_refused_and_nothing_is_recorded() {
    let empty = tempfile::tempdir().unwrap();
    let t = TestStudio::logged_in().await;
    let cases = [
        ("relative/path", "not an absolute path"),
        ("/no/such/folder/anywhere", "no such folder"),
        (empty.path().to_str().unwrap(), "not a dataset folder"),
        ("", "give the dataset folder"),
    ];
    for (path, expected) in cases {
        let answer = t.post_form("/datasets", &[("path", path)]).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert!(answer.body.contains(expected), "{path}: {}", answer.body);
    }
    assert!(t.registry().datasets().unwrap().is_empty());
    assert_eq!(t.get("/datasets/7").await.status, StatusCode::NOT_FOUND);
}

//! `semiclass check`: one defect per dataset, and clean datasets that pass.

use image::{DynamicImage, ImageFormat};

use crate::common::{Run, TinyDataset, fixture, png_chunks, semiclass};

/// Asserts the exit status and that some output line starts with `line_start`.
#[track_caller]
fn assert_reported(run: &Run, code: i32, line_start: &str) {
    let all = run.all();
    assert_eq!(run.code, code, "exit status; output:\n{all}");
    assert!(
        all.lines().any(|l| l.starts_with(line_start)),
        "no line starting with {line_start:?} in:\n{all}"
    );
}

#[test]
fn a_clean_dataset_passes_and_writes_report_and_histogram() {
    let data = TinyDataset::new();
    let before = data.files_outside_check_folder();
    let run = data.check();
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains("2 classes; train 4 labeled, train_unlabeled 2, val 2"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("check passed"));
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.path().join("check/check_report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["check_pass"], true);
    assert_eq!(report["num_classes"], 2);
    assert_eq!(report["class_names"], serde_json::json!(["cat", "dog"]));
    assert_eq!(
        report["counts"]["train"]["per_class"],
        serde_json::json!([2, 2])
    );
    assert_eq!(report["images"]["decoded"], 8);
    let png = image::open(data.path().join("check/class_histogram.png")).unwrap();
    assert!(png.width() > 500);
    assert_eq!(
        data.files_outside_check_folder(),
        before,
        "check wrote inside the dataset"
    );
}

#[test]
fn every_pixel_mode_passes() {
    let data = TinyDataset::new();
    let grey = image::GrayImage::from_fn(20, 20, |x, _| image::Luma([x as u8 * 9]));
    data.save(
        "images/grey.png",
        &DynamicImage::ImageLuma8(grey),
        ImageFormat::Png,
    );
    let rgba = image::RgbaImage::from_fn(20, 20, |x, y| image::Rgba([x as u8, y as u8, 9, 128]));
    data.save(
        "images/rgba.png",
        &DynamicImage::ImageRgba8(rgba),
        ImageFormat::Png,
    );
    let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_fn(20, 20, |x, _| {
        image::Rgb([x as u16 * 3000, 7, 65535])
    });
    data.save(
        "images/deep.png",
        &DynamicImage::ImageRgb16(deep),
        ImageFormat::Png,
    );
    data.write_bytes("images/palette.png", &palette_png());
    data.write_bytes(
        "images/cmyk.jpg",
        &std::fs::read(fixture("cmyk.jpg")).unwrap(),
    );
    data.write_bytes(
        "images/rotated.jpg",
        &std::fs::read(fixture("exif_rotate90.jpg")).unwrap(),
    );
    let rgb = image::RgbImage::from_fn(20, 20, |x, y| image::Rgb([x as u8, y as u8, 1]));
    data.save(
        "images/photo.bmp",
        &DynamicImage::ImageRgb8(rgb.clone()),
        ImageFormat::Bmp,
    );
    data.save(
        "images/photo.webp",
        &DynamicImage::ImageRgb8(rgb),
        ImageFormat::WebP,
    );
    data.write(
        "train_unlabeled.txt",
        "images/grey.png\nimages/rgba.png\nimages/deep.png\nimages/palette.png\nimages/cmyk.jpg\nimages/rotated.jpg\nimages/photo.bmp\nimages/photo.webp\n",
    );
    let run = data.check();
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.all().contains("error:"), "{}", run.all());
}

/// An 8-bit palette PNG, built by hand since `image` encodes only direct colour.
fn palette_png() -> Vec<u8> {
    let rows: Vec<u8> = (0..4u8).flat_map(|y| [0, 0, 1, y % 2, 1]).collect();
    png_chunks(&[
        (
            b"IHDR",
            [
                &4u32.to_be_bytes()[..],
                &4u32.to_be_bytes(),
                &[8, 3, 0, 0, 0],
            ]
            .concat(),
        ),
        (b"PLTE", vec![255, 0, 0, 0, 255, 0]),
        (b"IDAT", crate::common::zlib(&rows)),
        (b"IEND", vec![]),
    ])
}

/// A 300-byte PNG whose header declares 100000 x 100000 pixels.
fn bomb_png() -> Vec<u8> {
    let side = 100_000u32.to_be_bytes();
    png_chunks(&[
        (b"IHDR", [&side[..], &side, &[8, 0, 0, 0, 0]].concat()),
        (b"IDAT", crate::common::zlib(&[0; 256])),
        (b"IEND", vec![]),
    ])
}

#[test]
fn missing_list_file() {
    let data = TinyDataset::new();
    std::fs::remove_file(data.path().join("val.txt")).unwrap();
    assert_reported(&data.check(), 1, "val.txt: error: missing list file");
}

#[test]
fn malformed_line() {
    let data = TinyDataset::new();
    data.write(
        "train.txt",
        "images/a0.png 0\nimages/a1.png\nimages/b0.png 1\n",
    );
    assert_reported(&data.check(), 1, "train.txt:2: error: expected 'PATH ID'");
}

#[test]
fn non_integer_id() {
    let data = TinyDataset::new();
    data.write("val.txt", "images/v0.png 0\nimages/v1.png dog\n");
    assert_reported(
        &data.check(),
        1,
        "val.txt:2: error: class id 'dog' is not a non-negative integer",
    );
}

#[test]
fn id_not_in_label_file() {
    let data = TinyDataset::new();
    data.write(
        "train.txt",
        "images/a0.png 0\nimages/b0.png 1\nimages/b1.png 5\n",
    );
    assert_reported(
        &data.check(),
        1,
        "train.txt:3: error: class id 5 is not defined in label.txt",
    );
}

#[test]
fn duplicate_id_in_label_file() {
    let data = TinyDataset::new();
    data.write("label.txt", "0 cat\n1 dog\n1 bird\n");
    assert_reported(
        &data.check(),
        1,
        "label.txt:3: error: class id 1 is already defined at label.txt:2",
    );
}

#[test]
fn missing_image() {
    let data = TinyDataset::new();
    std::fs::remove_file(data.path().join("images/b1.png")).unwrap();
    assert_reported(
        &data.check(),
        1,
        "train.txt:4: error: image not found: images/b1.png",
    );
}

#[test]
fn image_that_does_not_decode() {
    let data = TinyDataset::new();
    data.write("images/u1.png", "this is text, not a PNG");
    assert_reported(
        &data.check(),
        1,
        "train_unlabeled.txt:2: error: images/u1.png does not decode",
    );
}

#[test]
fn image_without_pixels_is_an_error() {
    let data = TinyDataset::new();
    let zero_gif = std::fs::read(fixture("zero.gif")).unwrap();
    data.write_bytes("images/u1.png", &zero_gif);
    assert_reported(
        &data.check(),
        1,
        "train_unlabeled.txt:2: error: images/u1.png does not decode: the image has no pixels (0x0)",
    );
}

#[test]
fn truncated_image_does_not_decode() {
    let data = TinyDataset::new();
    let bytes = std::fs::read(data.path().join("images/v0.png")).unwrap();
    data.write_bytes("images/v0.png", &bytes[..bytes.len() / 2]);
    assert_reported(
        &data.check(),
        1,
        "val.txt:1: error: images/v0.png does not decode",
    );
}

#[test]
fn decompression_bomb_is_refused_from_its_header() {
    let data = TinyDataset::new();
    data.write_bytes("images/u0.png", &bomb_png());
    let run = data.check();
    assert_reported(
        &run,
        1,
        "train_unlabeled.txt:1: error: images/u0.png does not decode: header declares 100000x100000 pixels",
    );
}

#[test]
fn dot_dot_path_is_refused_and_never_read() {
    let data = TinyDataset::new();
    data.write(
        "train.txt",
        "images/a0.png 0\n../outside.png 0\nimages/b0.png 1\n",
    );
    assert_reported(
        &data.check(),
        1,
        "train.txt:2: error: path '../outside.png' leaves the dataset folder",
    );
}

#[test]
fn absolute_path_is_refused() {
    let data = TinyDataset::new();
    data.write("train_unlabeled.txt", "images/u0.png\n/etc/hostname\n");
    assert_reported(
        &data.check(),
        1,
        "train_unlabeled.txt:2: error: absolute path '/etc/hostname'",
    );
}

#[cfg(unix)]
#[test]
fn symlink_out_of_the_dataset_is_refused() {
    let data = TinyDataset::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(
        data.path().join("images/u0.png"),
        outside.path().join("secret.png"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.png"),
        data.path().join("images/link.png"),
    )
    .unwrap();
    data.write("train_unlabeled.txt", "images/u0.png\nimages/link.png\n");
    assert_reported(
        &data.check(),
        1,
        "train_unlabeled.txt:2: error: images/link.png is a link to",
    );
}

#[test]
fn same_image_with_two_labels() {
    let data = TinyDataset::new();
    data.write(
        "train.txt",
        "images/a0.png 0\nimages/b0.png 1\n./images/a0.png 1\n",
    );
    assert_reported(
        &data.check(),
        1,
        "train.txt:3: error: images/a0.png is labeled 1 here but 0 at train.txt:1",
    );
}

#[test]
fn same_image_in_train_and_val() {
    let data = TinyDataset::new();
    data.write("val.txt", "images/v0.png 0\nimages/b1.png 1\n");
    assert_reported(
        &data.check(),
        1,
        "val.txt:2: error: images/b1.png is also in train.txt:4",
    );
}

#[test]
fn empty_train() {
    let data = TinyDataset::new();
    data.write("train.txt", "\r\n  \n");
    assert_reported(
        &data.check(),
        1,
        "train.txt: error: no labeled training images",
    );
}

#[test]
fn empty_val() {
    let data = TinyDataset::new();
    data.write("val.txt", "");
    assert_reported(&data.check(), 1, "val.txt: error: no validation images");
}

#[test]
fn warnings_do_not_fail_the_check() {
    let data = TinyDataset::new();
    data.write("label.txt", "0 cat\n1 dog\n2 康乃馨\n");
    data.image("images/tiny.png", 8, 8);
    let many: String = (0..12).map(|i| format!("images/many{i}.png 0\n")).collect();
    for i in 0..12 {
        data.image(&format!("images/many{i}.png"), 32, 32);
    }
    data.write(
        "train.txt",
        &format!("{many}images/b0.png 1\nimages/tiny.png 0\n"),
    );
    data.write("train_unlabeled.txt", "images/u0.png\nimages/b0.png\n");
    let run = data.check();
    assert_reported(
        &run,
        0,
        "train_unlabeled.txt:2: warning: images/b0.png is also in train.txt:13",
    );
    assert_reported(
        &run,
        0,
        "label.txt:3: warning: class 2 '康乃馨' has no train image",
    );
    assert_reported(
        &run,
        0,
        "label.txt:3: warning: class 2 '康乃馨' has no val image",
    );
    assert_reported(
        &run,
        0,
        "train.txt: warning: classes are imbalanced: 'cat' has 13 images, 'dog' only 1",
    );
    assert_reported(
        &run,
        0,
        "train.txt:14: warning: images/tiny.png is only 8x8 px",
    );
    assert!(run.stdout.contains("check passed"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let data = TinyDataset::new();
    data.write(
        "train.txt",
        "images/a0.png x\nimages/nope.png 0\nimages/b0.png 9\n",
    );
    data.write("val.txt", "images/v0.png 0\nimages/gone.png 1\n");
    let run = data.check();
    for line in [
        "train.txt:1: error: class id 'x'",
        "train.txt:2: error: image not found",
        "train.txt:3: error: class id 9 is not defined",
        "val.txt:2: error: image not found",
    ] {
        assert_reported(&run, 1, line);
    }
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.path().join("check/check_report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["check_pass"], false);
    assert_eq!(report["errors"], 4);
    let problems = report["problems"].as_array().unwrap();
    let first = problems.iter().find(|p| p["file"] == "train.txt").unwrap();
    assert_eq!(first["line"], 1);
    assert_eq!(first["severity"], "error");
    assert_eq!(first["code"], "bad-class-id");
    assert_eq!(
        first["message"],
        "class id 'x' is not a non-negative integer"
    );
}

#[test]
fn bom_crlf_spaces_and_chinese_are_accepted() {
    let data = TinyDataset::new();
    data.image("images/my cat 1.png", 32, 32);
    data.write("label.txt", "\u{feff}0 小猫 咪\r\n1 dog  \r\n\r\n");
    data.write(
        "train.txt",
        "\u{feff}images/my cat 1.png 0 \r\nimages/a1.png\t0\r\nimages/b0.png 1\r\nimages/b1.png 1",
    );
    let run = data.check();
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("小猫 咪"), "{}", run.stdout);
}

#[test]
fn out_folder_is_where_reports_go() {
    let data = TinyDataset::new();
    let out = tempfile::tempdir().unwrap();
    let run = semiclass(&["check", data.arg(), "--out", out.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(out.path().join("check_report.json").is_file());
    assert!(out.path().join("class_histogram.png").is_file());
    assert!(!data.path().join("check").exists());
}

#[test]
fn a_folder_that_does_not_exist_cannot_be_checked() {
    let run = semiclass(&["check", "/nonexistent/dataset"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr
            .starts_with("semiclass: error: /nonexistent/dataset: not a dataset folder"),
        "{}",
        run.stderr
    );
    // The OS's reason once, not once more for each layer that carries it.
    assert_eq!(
        run.stderr.matches("os error 2").count(),
        1,
        "{}",
        run.stderr
    );
}

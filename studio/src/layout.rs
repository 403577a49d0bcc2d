//! The page shell: navigation, the embedded stylesheet and htmx.

use maud::{DOCTYPE, Markup, html};

use crate::assets::{HTMX_PATH, HTMX_SSE_PATH, STYLE_PATH};

/// htmx swaps 4xx answers too (they carry the reason, as a fragment) but
/// not 5xx. Without this, a refused form value would show nothing.
const HTMX_CONFIG: &str = r#"{"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"4..","swap":true,"error":false},{"code":"...","swap":false,"error":true}]}"#;

/// Where a page sits in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Datasets,
    Train,
    Jobs,
    Runs,
    Marks,
    Evals,
    Deploy,
}

/// A page of the studio, with the navigation.
pub fn page(title: &str, section: Section, body: Markup) -> Markup {
    let link = |href: &str, name: &str, this: Section| {
        html! { a href=(href) aria-current=[(section == this).then_some("page")] { (name) } }
    };
    shell(
        title,
        html! {
            header.top {
                a.brand href="/" { "semiclass " span { "studio" } }
                nav {
                    (link("/datasets", "Datasets", Section::Datasets))
                    (link("/train/new", "New training", Section::Train))
                    (link("/jobs", "Jobs", Section::Jobs))
                    (link("/runs", "Runs", Section::Runs))
                    (link("/marks", "Marks", Section::Marks))
                    (link("/evals", "Evaluations", Section::Evals))
                    (link("/deploy", "Deploy", Section::Deploy))
                }
            }
            main { (body) }
        },
    )
}

/// A page without navigation (the login page).
pub fn bare_page(title: &str, body: Markup) -> Markup {
    shell(title, html! { main { (body) } })
}

fn shell(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · semiclass studio" }
                link rel="stylesheet" href=(STYLE_PATH);
                // No icon: without this line every page asks for /favicon.ico (a 404).
                link rel="icon" href="data:,";
                script src=(HTMX_PATH) defer {}
                script src=(HTMX_SSE_PATH) defer {}
            }
            body { (body) }
        }
    }
}

/// A Unix time as the registry keeps it, for people (UTC).
pub fn when(unix: i64) -> String {
    semiclass_manifest::checkpoint::rfc3339_utc(unix.max(0) as u64).replace(['T', 'Z'], " ")
}

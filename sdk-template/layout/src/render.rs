//! `{{name}}` placeholders, filled from [`Facts`]. A placeholder is `{{`,
//! a name (a lowercase letter, then lowercase letters, digits and `_`;
//! spaces around it allowed) and `}}`; any other `{{` is plain text. An unknown name is an error, so
//! a template and the facts cannot drift apart unnoticed.

use crate::facts::Facts;

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("template line {line}: unknown placeholder {{{{{name}}}}} (known: {known})")]
    Unknown {
        line: usize,
        name: String,
        known: String,
    },
}

/// `template` with every placeholder replaced by its fact.
pub fn render(template: &str, facts: &Facts) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match placeholder(after) {
            Some((name, used)) => {
                let value = facts.get(name).ok_or_else(|| RenderError::Unknown {
                    line: template[..template.len() - rest.len() + start]
                        .lines()
                        .count()
                        .max(1),
                    name: name.to_string(),
                    known: facts.names().collect::<Vec<_>>().join(", "),
                })?;
                out.push_str(value);
                rest = &after[used..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The name in `text` (just after `{{`) and the length up to and including
/// `}}`, if `text` starts a placeholder.
fn placeholder(text: &str) -> Option<(&str, usize)> {
    let end = text.find("}}")?;
    let name = text[..end].trim();
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    valid.then_some((name, end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        let mut facts = Facts::default();
        facts.insert("arch", "resnet18");
        facts.insert("num_classes", "10");
        facts
    }

    #[test]
    fn fills_placeholders_and_leaves_other_braces() {
        let text = "{{arch}} has {{ num_classes }} classes; int a[1][1] = {{0}}; {{}} {{ x y }}";
        assert_eq!(
            render(text, &facts()).unwrap(),
            "resnet18 has 10 classes; int a[1][1] = {{0}}; {{}} {{ x y }}"
        );
        assert_eq!(
            render("no placeholders {{", &facts()).unwrap(),
            "no placeholders {{"
        );
    }

    #[test]
    fn an_unknown_placeholder_names_its_line() {
        let err = render("a\nb {{arhc}}\n", &facts()).unwrap_err();
        let RenderError::Unknown { line, name, known } = &err;
        assert_eq!((*line, name.as_str()), (2, "arhc"));
        assert!(known.contains("arch"), "{err}");
        assert!(err.to_string().contains("{{arhc}}"), "{err}");
    }
}

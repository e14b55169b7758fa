//! `behaviour_suite!` must run every case: each `pub async fn ...(store: Arc<dyn LedgerStore>)`
//! in `src/suite/` appears in the macro's list, and nothing else does.

use std::collections::BTreeSet;
use std::path::Path;

/// The parameters of a plain case, and of a case that also tampers with the store's database.
const PLAIN: &str = "store: Arc<dyn LedgerStore>";
const TAMPERING: &str = "store: Arc<dyn LedgerStore>, tamper: Arc<dyn Tamper>";

/// Case names defined in the suite's sources: (plain cases, tampering cases).
fn defined_cases() -> (BTreeSet<String>, BTreeSet<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/suite");
    let (mut plain, mut tampering) = (BTreeSet::new(), BTreeSet::new());
    for entry in std::fs::read_dir(&dir).expect("src/suite should be readable") {
        let path = entry.expect("a directory entry").path();
        let text = std::fs::read_to_string(&path).expect("a suite source file");
        // Signatures may wrap after the opening parenthesis; join lines first.
        let joined: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for part in joined.split("pub async fn ").skip(1) {
            let Some((name, rest)) = part.split_once('(') else {
                continue;
            };
            let name = name.trim();
            let is_ident =
                !name.is_empty() && name.bytes().all(|b| b == b'_' || b.is_ascii_alphanumeric());
            let params = rest.split(')').next().unwrap_or("");
            let params = params.trim().trim_end_matches(',').trim();
            if is_ident && params == PLAIN {
                plain.insert(name.to_owned());
            } else if is_ident && params == TAMPERING {
                tampering.insert(name.to_owned());
            }
        }
    }
    (plain, tampering)
}

/// Case names in the macro's lists: the lines after `@cases $name, $store, [` in the first
/// rule up to `], tampering [`, and from there up to the line closing it; without comments and
/// `#[...]` attributes (a case known to fail is listed with `#[ignore = "..."]` on the line
/// before it).
fn listed_cases() -> (BTreeSet<String>, BTreeSet<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/suite/mod.rs");
    let text = std::fs::read_to_string(path).expect("src/suite/mod.rs");
    let start = text
        .find("@cases $name, $store, [")
        .expect("the macro's case list");
    let mut lines = text[start..]
        .lines()
        .skip(1)
        .map(|l| l.split("//").next().unwrap_or("").trim());
    fn list<'a>(lines: &mut impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        lines
            .take_while(|l| !l.starts_with(']'))
            .filter(|l| !l.is_empty() && !l.starts_with("#["))
            .map(|l| l.trim_end_matches(',').to_owned())
            .collect()
    }
    let plain = list(&mut lines);
    let tampering = list(&mut lines);
    (plain, tampering)
}

/// The reasons of the cases listed as ignored: each says which kind of bug it is.
fn ignore_reasons() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/suite/mod.rs");
    let text = std::fs::read_to_string(path).expect("src/suite/mod.rs");
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("#[ignore"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn behaviour_suite_macro_lists_every_case() {
    let (plain, tampering) = defined_cases();
    let (listed, listed_tampering) = listed_cases();
    assert!(plain.len() >= 40, "the scan found only {plain:?}");
    assert!(!tampering.is_empty(), "the scan found no tampering case");
    assert_eq!(
        listed, plain,
        "behaviour_suite! must list exactly the suite's cases"
    );
    assert_eq!(
        listed_tampering, tampering,
        "behaviour_suite! must list exactly the suite's tampering cases after `tampering`"
    );
}

#[test]
fn ignored_cases_say_which_bug_they_show() {
    for reason in ignore_reasons() {
        assert!(
            reason.starts_with("#[ignore = \"domain bug: ")
                || reason.starts_with("#[ignore = \"store bug: "),
            "an ignored case must name the bug it shows: {reason}"
        );
    }
}

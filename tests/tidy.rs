//! Tidy: keeps the architecture true with plain text scans of the workspace sources.
//!
//! Scanned: every `.rs` file under `src/` (the library), `cli/src/` (the binary),
//! `loadgen/src/` (the load generator) and `ffi/src/` (the C API). Failure messages name the
//! file by its workspace path.
//!
//! The scanner is deliberately small: [`mask`] blanks comments and the contents of string and
//! char literals (keeping byte offsets and newlines), and every rule reads the masked text, so a
//! brace, `unsafe` or `std::net` inside a string or comment never counts.
//!
//! Rules (one `#[test]` each):
//! 1. `no_function_over_100_lines_except_ratchet_list`: a function is counted from its `fn` line
//!    to its closing brace, inclusive. Test functions count too (no exemption for
//!    `#[cfg(test)]` modules). [`LONG_FUNCTIONS_ALLOWED`] is a ratchet: a listed function may
//!    not grow, and must be removed from the list once it is at or under the limit or gone.
//! 2. `sans_io_modules_do_not_import_the_io_layer` and `sans_io_roots_forbid_unsafe_code`:
//!    [`SANS_IO_DIRS`], [`SANS_IO_FILES`] and files carrying [`SANS_IO_MARKER`] in their first
//!    lines may not name any path in [`IO_LAYER_PATHS`], in a `use` or fully qualified, outside
//!    `#[cfg(test)]` items (`super::`/`self::` are resolved). [`IO_VALUE_TYPES`] are plain values
//!    that open nothing; [`SANS_IO_EXCEPTIONS`] is a ratchet of known debts.
//! 3. `unsafe_only_in_the_io_layer_with_safety_comments`: the word `unsafe` (blocks, fns, impls,
//!    test code included) only in [`UNSAFE_ALLOWED`]; every `unsafe {` has a `// SAFETY:`
//!    comment on its line, within the [`SAFETY_LOOKBACK_LINES`] lines above, or in the unbroken
//!    comment block directly above it.
//! 4. `library_code_does_not_unwrap_or_expect_without_an_invariant`: in the library (`src/`,
//!    outside `#[cfg(test)]` items), `.unwrap()` is forbidden and `.expect(..)` must take a string
//!    literal that states the invariant: it contains one of [`EXPECT_INVARIANT_WORDS`]. Known
//!    exceptions go in [`PANIC_ALLOWED`] with a reason.
//!
//! "`#[cfg(test)]` item" means the item after the attribute: a `mod tests { .. }`, a `fn`, a
//! `use ..;`, and so on; files named `tests.rs`, and the files of a `tests/` module directory,
//! are test code as a whole (a rule checks that such a directory's module is declared only
//! under `#[cfg(test)]`).

use std::fmt::Write as _;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Configuration: the architecture, as data.
// ---------------------------------------------------------------------------------------------

/// Source roots, relative to the workspace root; missing ones are skipped.
const SOURCE_ROOTS: &[&str] = &["src", "cli/src", "loadgen/src", "ffi/src"];

/// Rule 1: the longest a function may be, in lines from `fn` to its closing brace.
const MAX_FN_LINES: usize = 100;

/// Rule 1 ratchet: (workspace path, fn name, its length today). Shrink it; never grow it.
const LONG_FUNCTIONS_ALLOWED: &[(&str, &str, usize)] = &[
    ("loadgen/src/fake_relay.rs", "serve", 107),
    ("loadgen/src/runner.rs", "measure", 124),
];

/// Rule 2: directories whose every file is sans-IO (their `mod.rs` is the module root).
const SANS_IO_DIRS: &[&str] = &["src/protocol/", "src/core/", "src/ack/"];

/// Rule 2: single-file sans-IO modules (checked when they exist).
const SANS_IO_FILES: &[&str] = &[
    "src/config.rs",
    "src/cluster/wire.rs",
    "src/cluster/membership.rs",
    "src/cluster/replica.rs",
    "src/cluster/control.rs",
    "src/cluster/lane.rs",
];

/// Rule 2: a file whose first [`MARKER_LINES`] lines contain this is sans-IO too.
const SANS_IO_MARKER: &str = "//! sans-IO";
const MARKER_LINES: usize = 10;

/// Rule 2: the I/O layer. A path is forbidden if it starts with one of these (by segments).
const IO_LAYER_PATHS: &[&str] = &[
    "crate::server",
    "crate::client",
    "crate::cluster::node",
    "crate::cluster::link_io",
    "std::net",
    "std::thread",
    "std::time::Instant",
    "std::time::SystemTime",
    "std::fs",
    "io_uring",
    "libc",
    "socket2",
    "httparse",
];

/// Rule 2: plain address values under `std::net`; they open no socket, so sans-IO may hold them.
const IO_VALUE_TYPES: &[&str] = &[
    "std::net::SocketAddr",
    "std::net::SocketAddrV4",
    "std::net::SocketAddrV6",
    "std::net::IpAddr",
    "std::net::Ipv4Addr",
    "std::net::Ipv6Addr",
];

/// Rule 2 ratchet: (workspace path, exact forbidden path used, reason). Stale entries fail.
const SANS_IO_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "src/config.rs",
        "std::fs::read_to_string",
        "Config::from_toml_file reads the file; debt: move the read to the cli, keep from_toml_str",
    ),
    (
        "src/config.rs",
        "std::thread::available_parallelism",
        "Config::worker_count asks the host for `workers = 0`; debt: pass the CPU count in",
    ),
];

/// Rule 2: every sans-IO module root must carry this inner attribute.
const FORBID_UNSAFE: &str = "#![forbid(unsafe_code)]";

/// Rule 3: where `unsafe` may appear: a directory prefix (ending in `/`) or an exact file.
const UNSAFE_ALLOWED: &[&str] = &[
    "src/server/",
    // The C API: raw pointers from C, callbacks into C, the client's eventfds and poll.
    "ffi/src/",
    "cli/src/signals.rs",
    "loadgen/src/cpu.rs",
    "loadgen/src/sender.rs",
];

/// Rule 3: how many lines above an `unsafe {` its `// SAFETY:` comment may start.
const SAFETY_LOOKBACK_LINES: usize = 3;

/// Rule 4: an `.expect("..")` message must contain one of these words (case-insensitive).
const EXPECT_INVARIANT_WORDS: &[&str] = &["always", "never", "cannot", "invariant"];

/// Rule 4 allowlist: (workspace path, text on the offending line, reason). Stale entries fail.
const PANIC_ALLOWED: &[(&str, &str, &str)] = &[];

// ---------------------------------------------------------------------------------------------
// Source files.
// ---------------------------------------------------------------------------------------------

struct SourceFile {
    /// Path on disk, relative to the workspace root (for messages).
    disk: String,
    /// Path in the workspace layout (for the constants above).
    path: String,
    text: String,
    masked: String,
    /// Byte ranges of `#[cfg(test)]` items (the whole file for `tests.rs` and for the files
    /// of a `tests/` module directory, which only a `#[cfg(test)] mod tests;` includes).
    test_ranges: Vec<(usize, usize)>,
    line_starts: Vec<usize>,
}

impl SourceFile {
    fn new(disk: &str, text: String) -> SourceFile {
        let masked = mask(&text);
        let path = disk.to_string();
        let test_ranges = if disk.ends_with("/tests.rs") || disk.contains("/tests/") {
            vec![(0, text.len())]
        } else {
            cfg_test_ranges(&masked)
        };
        let line_starts = line_starts(&text);
        SourceFile {
            disk: disk.to_string(),
            path,
            text,
            masked,
            test_ranges,
            line_starts,
        }
    }

    /// 1-based line of a byte offset.
    fn line(&self, pos: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= pos)
    }

    fn in_test(&self, pos: usize) -> bool {
        self.test_ranges.iter().any(|&(s, e)| s <= pos && pos < e)
    }

    fn at(&self, pos: usize) -> String {
        format!("{}:{}", self.disk, self.line(pos))
    }
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn collect_rs(dir: &Path, rel: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("tidy: cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("tidy: directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let rel = format!("{rel}/{name}");
        if p.is_dir() {
            collect_rs(&p, &rel, out);
        } else if name.ends_with(".rs") {
            out.push(rel);
        }
    }
}

fn source_files() -> Vec<SourceFile> {
    let mut paths = Vec::new();
    for root in SOURCE_ROOTS {
        let dir = workspace_root().join(root);
        if dir.is_dir() {
            collect_rs(&dir, root, &mut paths);
        }
    }
    assert!(!paths.is_empty(), "tidy: found no source files");
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(workspace_root().join(p))
                .unwrap_or_else(|e| panic!("tidy: cannot read {p}: {e}"));
            SourceFile::new(p, text)
        })
        .collect()
}

/// Files of a `tests/` module directory count as test code as a whole: so the module that
/// includes the directory must be declared under `#[cfg(test)]`, in the parent module's file
/// (`x/mod.rs` or `x.rs` for `x/tests/`).
#[test]
fn test_module_directories_are_included_only_under_cfg_test() {
    let files = source_files();
    let mut violations = Vec::new();
    let mut parents: Vec<&str> = files
        .iter()
        .filter_map(|f| f.disk.split_once("/tests/").map(|(parent, _)| parent))
        .collect();
    parents.dedup();
    for parent in parents {
        let declared = [format!("{parent}/mod.rs"), format!("{parent}.rs")]
            .iter()
            .filter_map(|p| files.iter().find(|f| &f.disk == p))
            .any(|f| {
                f.masked.match_indices("mod tests").any(|(at, _)| {
                    f.test_ranges
                        .iter()
                        .any(|&(start, end)| start <= at && at < end)
                })
            });
        if !declared {
            violations.push(format!(
                "{parent}/tests/: no `mod tests` under #[cfg(test)] in {parent}/mod.rs or {parent}.rs"
            ));
        }
    }
    report(
        "a tests/ module directory is included only under #[cfg(test)]",
        &violations,
    );
}

fn line_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    starts
}

fn report(rule: &str, violations: &[String]) {
    if violations.is_empty() {
        return;
    }
    let mut msg = format!("tidy: {} violation(s) of rule: {rule}\n", violations.len());
    for v in violations {
        let _ = writeln!(msg, "  {v}");
    }
    panic!("{msg}");
}

// ---------------------------------------------------------------------------------------------
// Scanner: masking.
// ---------------------------------------------------------------------------------------------

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Blanks `out[from..to]` except newlines.
fn blank(out: &mut [u8], from: usize, to: usize) {
    let to = to.min(out.len());
    for b in &mut out[from..to] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
}

/// The text with comments blanked and string/char literal contents blanked (quotes kept).
/// Byte offsets and newlines are preserved, so lines and positions map 1:1 to the original.
fn mask(text: &str) -> String {
    let s = text.as_bytes();
    let mut out = s.to_vec();
    let mut i = 0;
    while i < s.len() {
        let prev_ident = i > 0 && is_ident(s[i - 1]);
        if s[i..].starts_with(b"//") {
            let end = s[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(s.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if s[i..].starts_with(b"/*") {
            let end = block_comment_end(s, i);
            blank(&mut out, i, end);
            i = end;
        } else if let Some((open, close, hashes)) = raw_string_at(s, i, prev_ident) {
            blank(&mut out, open, close);
            i = close + 1 + hashes;
        } else if s[i] == b'"' {
            let end = quoted_end(s, i + 1, b'"');
            blank(&mut out, i + 1, end);
            i = end + 1;
        } else if s[i] == b'\'' {
            i = match char_literal_end(text, i) {
                Some(end) => {
                    blank(&mut out, i + 1, end);
                    end + 1
                }
                None => i + 1, // a lifetime or label
            };
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("masking only writes ASCII spaces over whole literals")
}

/// End (exclusive) of the (nestable) block comment starting at `i`.
fn block_comment_end(s: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < s.len() {
        if s[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if s[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    s.len()
}

/// A raw string (`r"..."`, `br#"..."#`, `cr".."`) at `i`: (first content byte, closing quote,
/// number of `#`).
fn raw_string_at(s: &[u8], i: usize, prev_ident: bool) -> Option<(usize, usize, usize)> {
    if prev_ident {
        return None;
    }
    let mut j = i;
    if matches!(s[j], b'b' | b'c') && s.get(j + 1) == Some(&b'r') {
        j += 1;
    }
    if s[j] != b'r' {
        return None;
    }
    j += 1;
    let hashes = s[j..].iter().take_while(|&&b| b == b'#').count();
    j += hashes;
    if s.get(j) != Some(&b'"') {
        return None;
    }
    let open = j + 1;
    let mut k = open;
    while k < s.len() {
        if s[k] == b'"'
            && s[k + 1..]
                .iter()
                .take(hashes)
                .filter(|&&b| b == b'#')
                .count()
                == hashes
        {
            return Some((open, k, hashes));
        }
        k += 1;
    }
    Some((open, s.len(), 0))
}

/// Index of the closing `quote` of a literal whose content starts at `i` (escapes honoured).
fn quoted_end(s: &[u8], mut i: usize, quote: u8) -> usize {
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b if b == quote => return i,
            _ => i += 1,
        }
    }
    s.len()
}

/// If a char literal starts at `i` (a `'`), the index of its closing quote; `None` for lifetimes.
fn char_literal_end(text: &str, i: usize) -> Option<usize> {
    let s = text.as_bytes();
    match s.get(i + 1)? {
        b'\\' => Some(quoted_end(s, i + 1, b'\'')),
        _ => {
            let c = text[i + 1..].chars().next()?;
            let close = i + 1 + c.len_utf8();
            (s.get(close) == Some(&b'\'')).then_some(close)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scanner: structure.
// ---------------------------------------------------------------------------------------------

/// Offsets where the whole word `word` occurs in `masked`.
fn find_words(masked: &str, word: &str) -> Vec<usize> {
    let s = masked.as_bytes();
    masked
        .match_indices(word)
        .map(|(i, _)| i)
        .filter(|&i| {
            let before = i == 0 || !is_ident(s[i - 1]);
            let after = !matches!(s.get(i + word.len()), Some(&b) if is_ident(b));
            before && after
        })
        .collect()
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Index of the bracket matching the opening one at `open` (any of `{([`), or `len`.
fn matching_close(s: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, &b) in s.iter().enumerate().skip(open) {
        match b {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// From `from`, the first `{` or `;` outside `()`/`[]`: the body start, or `None` at a `;`.
fn body_open(s: &[u8], from: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (k, &b) in s.iter().enumerate().skip(from) {
        match b {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'{' if depth == 0 => return Some(k),
            b';' if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// End (exclusive) of the item starting at `from`: its matching `}` or its `;`.
fn item_end(s: &[u8], from: usize) -> usize {
    match body_open(s, from) {
        Some(open) => (matching_close(s, open) + 1).min(s.len()),
        None => s[from..]
            .iter()
            .position(|&b| b == b';')
            .map_or(s.len(), |n| from + n + 1),
    }
}

/// Byte ranges of the items that follow a `#[cfg(test)]` attribute.
fn cfg_test_ranges(masked: &str) -> Vec<(usize, usize)> {
    let s = masked.as_bytes();
    let mut ranges = Vec::new();
    for (at, _) in masked.match_indices("#[") {
        let close = matching_close(s, at + 1);
        let attr: String = masked[at..close.min(s.len())]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if attr != "#[cfg(test)" {
            continue;
        }
        // Skip further attributes, then take the item.
        let mut i = skip_ws(s, close + 1);
        while s[i..].starts_with(b"#[") {
            i = skip_ws(s, matching_close(s, i + 1) + 1);
        }
        ranges.push((at, item_end(s, i)));
    }
    ranges
}

struct Function {
    name: String,
    /// Offset of the `fn` keyword.
    at: usize,
    lines: usize,
}

/// Every function with a body, nested ones included, with its length in lines.
fn functions(file: &SourceFile) -> Vec<Function> {
    let s = file.masked.as_bytes();
    let mut out = Vec::new();
    for at in find_words(&file.masked, "fn") {
        let start = skip_ws(s, at + 2);
        let len = s[start..].iter().take_while(|&&b| is_ident(b)).count();
        if len == 0 {
            continue; // `fn(u8) -> u8`, a pointer type
        }
        let Some(open) = body_open(s, start + len) else {
            continue; // a declaration without a body
        };
        let close = matching_close(s, open);
        out.push(Function {
            name: file.masked[start..start + len].to_string(),
            at,
            lines: file.line(close) - file.line(at) + 1,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Scanner: paths (rule 2).
// ---------------------------------------------------------------------------------------------

/// The module path of a library file: `src/cluster/wire.rs` -> `crate::cluster::wire`.
fn module_path(path: &str) -> String {
    let rel = path.strip_prefix("src/").unwrap_or(path);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut segs = vec!["crate"];
    segs.extend(rel.split('/'));
    if matches!(segs.last(), Some(&"mod") | Some(&"lib")) {
        segs.pop();
    }
    segs.join("::")
}

/// Resolves `self::`, `super::` and a leading `::` against `module`.
fn resolve(path: &str, module: &str) -> String {
    let mut base: Vec<&str> = module.split("::").collect();
    let mut rest = path.strip_prefix("::").unwrap_or(path);
    if rest == "self" || rest.starts_with("self::") {
        rest = rest
            .strip_prefix("self")
            .unwrap_or(rest)
            .trim_start_matches("::");
    } else if rest.starts_with("super::") {
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
    } else {
        return rest.to_string();
    }
    base.push(rest);
    base.retain(|s| !s.is_empty());
    base.join("::")
}

/// Splits `s` at commas outside braces.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (k, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// Expands a use tree (`std::{net::TcpStream, fs}`) into full paths; renames are dropped.
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let leaf = tree.split_whitespace().next().unwrap_or_default();
        return vec![leaf.to_string()];
    };
    let prefix = tree[..open].trim().trim_end_matches("::");
    let close = tree.rfind('}').unwrap_or(tree.len());
    let mut out = Vec::new();
    for part in split_top_level(&tree[open + 1..close]) {
        for sub in expand_use_tree(part) {
            out.push(match (prefix.is_empty(), sub.as_str()) {
                (true, _) => sub,
                (false, "self") => prefix.to_string(),
                (false, _) => format!("{prefix}::{sub}"),
            });
        }
    }
    out
}

/// Every path named in non-test code: (offset, path resolved against the file's module).
fn paths_used(file: &SourceFile) -> Vec<(usize, String)> {
    let s = file.masked.as_bytes();
    let module = module_path(&file.path);
    let mut out = Vec::new();
    let mut use_ranges = Vec::new();
    for at in find_words(&file.masked, "use") {
        let end = item_end(s, at);
        use_ranges.push((at, end));
        if !file.in_test(at) {
            let tree = file.masked[at + 3..end].trim_end_matches(';');
            for p in expand_use_tree(tree) {
                out.push((at, resolve(&p, &module)));
            }
        }
    }
    for (at, p) in qualified_paths(&file.masked) {
        let in_use = use_ranges.iter().any(|&(s, e)| s <= at && at < e);
        if !in_use && !file.in_test(at) {
            out.push((at, resolve(&p, &module)));
        }
    }
    out
}

/// Every `a::b(::c)*` path in `masked` (leading `::` kept), with its offset.
fn qualified_paths(masked: &str) -> Vec<(usize, String)> {
    let s = masked.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let starts = is_ident(s[i]) || s[i..].starts_with(b"::");
        if !starts || (i > 0 && (is_ident(s[i - 1]) || s[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let mut j = i;
        loop {
            j += s[j..].iter().take_while(|&&b| b == b':').count().min(2);
            let seg = s[j..].iter().take_while(|&&b| is_ident(b)).count();
            j += seg;
            if seg == 0 || !s[j..].starts_with(b"::") || !s.get(j + 2).is_some_and(|&b| is_ident(b))
            {
                break;
            }
        }
        let path = &masked[i..j];
        if path.contains("::") && !path.ends_with(':') {
            out.push((i, path.to_string()));
        }
        i = j.max(i + 1);
    }
    out
}

/// Whether `path` starts with `prefix`, segment by segment.
fn path_starts_with(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{prefix}::"))
}

/// The I/O-layer prefix that `path` names, unless it is an allowed plain value type.
fn forbidden_prefix(path: &str) -> Option<&'static str> {
    if IO_VALUE_TYPES.iter().any(|v| path_starts_with(path, v)) {
        return None;
    }
    IO_LAYER_PATHS
        .iter()
        .copied()
        .find(|p| path_starts_with(path, p))
}

fn is_sans_io(file: &SourceFile) -> bool {
    SANS_IO_DIRS.iter().any(|d| file.path.starts_with(d))
        || SANS_IO_FILES.contains(&file.path.as_str())
        || file
            .text
            .lines()
            .take(MARKER_LINES)
            .any(|l| l.contains(SANS_IO_MARKER))
}

/// Sans-IO module roots: `mod.rs` of the dirs, and sans-IO files outside those dirs.
fn is_sans_io_root(file: &SourceFile) -> bool {
    let in_dir = SANS_IO_DIRS.iter().any(|d| file.path.starts_with(d));
    let dir_root = SANS_IO_DIRS
        .iter()
        .any(|d| file.path == format!("{d}mod.rs"));
    dir_root || (!in_dir && is_sans_io(file))
}

// ---------------------------------------------------------------------------------------------
// Scanner: unsafe and panics (rules 3 and 4).
// ---------------------------------------------------------------------------------------------

fn unsafe_allowed(path: &str) -> bool {
    UNSAFE_ALLOWED.iter().any(|a| {
        if a.ends_with('/') {
            path.starts_with(a)
        } else {
            path == *a
        }
    })
}

/// Whether the `unsafe {` at `pos` has a `// SAFETY:` comment on its line, within the
/// [`SAFETY_LOOKBACK_LINES`] lines above, or in the unbroken comment block directly above.
fn has_safety_comment(file: &SourceFile, pos: usize) -> bool {
    let lines: Vec<&str> = file.text.lines().collect();
    let line = file.line(pos) - 1;
    if lines[line].contains("// SAFETY:") {
        return true;
    }
    let mut k = line;
    while k > 0 {
        k -= 1;
        let l = lines[k].trim_start();
        if l.starts_with("// SAFETY:") {
            return true;
        }
        if line - k >= SAFETY_LOOKBACK_LINES && !l.starts_with("//") {
            return false;
        }
    }
    false
}

/// Offsets of `unsafe {` blocks (not `unsafe fn`/`impl`).
fn unsafe_blocks(file: &SourceFile) -> Vec<usize> {
    let s = file.masked.as_bytes();
    find_words(&file.masked, "unsafe")
        .into_iter()
        .filter(|&at| s.get(skip_ws(s, at + 6)) == Some(&b'{'))
        .collect()
}

/// `.unwrap()` and `.expect(..)` calls in non-test code that break rule 4, as messages.
fn panic_calls(file: &SourceFile) -> Vec<(usize, String)> {
    let s = file.masked.as_bytes();
    let mut out = Vec::new();
    for (word, args) in [("unwrap", "()"), ("expect", "(")] {
        for at in find_words(&file.masked, word) {
            let before = file.masked[..at].trim_end();
            let after = skip_ws(s, at + word.len());
            if !before.ends_with('.') || !file.masked[after..].starts_with(args) || file.in_test(at)
            {
                continue;
            }
            if word == "unwrap" {
                out.push((at, "`.unwrap()`".to_string()));
            } else if let Some(why) = bad_expect_message(file, after + 1) {
                out.push((at, why));
            }
        }
    }
    out
}

/// Why the `.expect(` argument starting at `from` does not state an invariant, if it does not.
fn bad_expect_message(file: &SourceFile, from: usize) -> Option<String> {
    let s = file.masked.as_bytes();
    let open = skip_ws(s, from);
    if s.get(open) != Some(&b'"') {
        return Some("`.expect(..)` without a string literal message".to_string());
    }
    let close = quoted_end(s, open + 1, b'"');
    let msg = &file.text[open + 1..close];
    let lower = msg.to_lowercase();
    if EXPECT_INVARIANT_WORDS.iter().any(|w| lower.contains(w)) {
        return None;
    }
    Some(format!(
        "`.expect(\"{msg}\")`: the message must state the invariant (contain one of {EXPECT_INVARIANT_WORDS:?})"
    ))
}

// ---------------------------------------------------------------------------------------------
// The rules.
// ---------------------------------------------------------------------------------------------

fn long_function_violations(files: &[SourceFile]) -> Vec<String> {
    let mut v = Vec::new();
    let mut longest: Vec<Option<usize>> = vec![None; LONG_FUNCTIONS_ALLOWED.len()];
    for file in files {
        for f in functions(file) {
            let listed = LONG_FUNCTIONS_ALLOWED
                .iter()
                .position(|&(p, n, _)| p == file.path && n == f.name);
            if let Some(k) = listed {
                longest[k] = longest[k].max(Some(f.lines));
            }
            if f.lines <= MAX_FN_LINES {
                continue;
            }
            match listed.map(|k| LONG_FUNCTIONS_ALLOWED[k]) {
                Some((_, _, max)) if f.lines <= max => {}
                Some((_, _, max)) => v.push(format!(
                    "{}: fn `{}` grew to {} lines (ratchet allows {max}, limit {MAX_FN_LINES}); split it",
                    file.at(f.at), f.name, f.lines
                )),
                None => v.push(format!(
                    "{}: fn `{}` is {} lines (limit {MAX_FN_LINES}); split it",
                    file.at(f.at), f.name, f.lines
                )),
            }
        }
    }
    for (k, &(path, name, _)) in LONG_FUNCTIONS_ALLOWED.iter().enumerate() {
        match longest[k] {
            None => v.push(format!(
                "LONG_FUNCTIONS_ALLOWED: {path} fn `{name}` no longer exists; remove it from the list"
            )),
            Some(n) if n <= MAX_FN_LINES => v.push(format!(
                "LONG_FUNCTIONS_ALLOWED: {path} fn `{name}` is now {n} lines (limit {MAX_FN_LINES}); remove it from the list"
            )),
            Some(_) => {}
        }
    }
    v
}

#[test]
fn no_function_over_100_lines_except_ratchet_list() {
    report(
        "a function is at most 100 lines (fn line to closing brace); LONG_FUNCTIONS_ALLOWED only shrinks",
        &long_function_violations(&source_files()),
    );
}

fn sans_io_import_violations(files: &[SourceFile]) -> Vec<String> {
    let mut v = Vec::new();
    let mut used = vec![false; SANS_IO_EXCEPTIONS.len()];
    for file in files.iter().filter(|f| is_sans_io(f)) {
        for (at, path) in paths_used(file) {
            let Some(prefix) = forbidden_prefix(&path) else {
                continue;
            };
            let exception = SANS_IO_EXCEPTIONS
                .iter()
                .position(|&(p, what, _)| p == file.path && what == path);
            match exception {
                Some(k) => used[k] = true,
                None => v.push(format!(
                    "{}: sans-IO module names `{path}` (I/O layer `{prefix}`)",
                    file.at(at)
                )),
            }
        }
    }
    for (k, &(path, what, _)) in SANS_IO_EXCEPTIONS.iter().enumerate() {
        if !used[k] {
            v.push(format!(
                "SANS_IO_EXCEPTIONS: {path} no longer names `{what}`; remove it from the list"
            ));
        }
    }
    v
}

#[test]
fn sans_io_modules_do_not_import_the_io_layer() {
    report(
        "sans-IO modules (SANS_IO_DIRS, SANS_IO_FILES, `//! sans-IO`) never name IO_LAYER_PATHS outside #[cfg(test)]",
        &sans_io_import_violations(&source_files()),
    );
}

/// Rule 2b: the library's layers, lowest first. A module may use its own layer and the ones
/// below, never one above: the server drives the cluster, the engine and the codec; the
/// cluster's control plane reaches the server only through the `ClusterHost` trait it defines.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "src/protocol/",
        &[
            "crate::core",
            "crate::cluster",
            "crate::server",
            "crate::client",
        ],
    ),
    (
        "src/core/",
        &["crate::cluster", "crate::server", "crate::client"],
    ),
    ("src/cluster/", &["crate::server", "crate::client"]),
    // The client speaks the wire protocol only: it never reaches into the relay.
    (
        "src/client/",
        &["crate::core", "crate::cluster", "crate::server"],
    ),
    (
        "src/config.rs",
        &[
            "crate::core",
            "crate::cluster",
            "crate::server",
            "crate::client",
        ],
    ),
    (
        "src/byte_size.rs",
        &[
            "crate::core",
            "crate::cluster",
            "crate::server",
            "crate::client",
        ],
    ),
    // Acknowledged delivery runs in the clients: it speaks the protocol, nothing of the relay.
    (
        "src/ack/",
        &[
            "crate::core",
            "crate::cluster",
            "crate::server",
            "crate::client",
        ],
    ),
    (
        "src/cpu_list.rs",
        &[
            "crate::core",
            "crate::cluster",
            "crate::server",
            "crate::client",
        ],
    ),
    (
        "src/endpoint.rs",
        &[
            "crate::core",
            "crate::cluster",
            "crate::server",
            "crate::client",
        ],
    ),
    (
        "src/memory_budget.rs",
        &[
            "crate::core",
            "crate::cluster",
            "crate::server",
            "crate::client",
        ],
    ),
];

fn layer_violations(files: &[SourceFile]) -> Vec<String> {
    let mut v = Vec::new();
    for file in files {
        let Some((layer, above)) = LAYERS.iter().find(|(l, _)| file.path.starts_with(l)) else {
            continue;
        };
        for (at, path) in paths_used(file) {
            if let Some(up) = above.iter().find(|p| path_starts_with(&path, p)) {
                v.push(format!(
                    "{}: `{path}` reaches up from {layer} into `{up}`",
                    file.at(at)
                ));
            }
        }
    }
    v
}

#[test]
fn no_layer_imports_a_layer_above_it() {
    report(
        "protocol < core < cluster < server: no module names a layer above its own (LAYERS)",
        &layer_violations(&source_files()),
    );
}

#[test]
fn sans_io_roots_forbid_unsafe_code() {
    let v: Vec<String> = source_files()
        .iter()
        .filter(|f| is_sans_io_root(f) && !f.text.contains(FORBID_UNSAFE))
        .map(|f| format!("{}:1: sans-IO module root lacks `{FORBID_UNSAFE}`", f.disk))
        .collect();
    report(
        "every sans-IO module root carries #![forbid(unsafe_code)]",
        &v,
    );
}

fn unsafe_violations(files: &[SourceFile]) -> Vec<String> {
    let mut v = Vec::new();
    for file in files {
        if !unsafe_allowed(&file.path) {
            for at in find_words(&file.masked, "unsafe") {
                v.push(format!(
                    "{}: `unsafe` outside the I/O layer (UNSAFE_ALLOWED)",
                    file.at(at)
                ));
            }
            continue;
        }
        for at in unsafe_blocks(file) {
            if !has_safety_comment(file, at) {
                v.push(format!(
                    "{}: `unsafe {{` without a `// SAFETY:` comment on the line or just above",
                    file.at(at)
                ));
            }
        }
    }
    v
}

#[test]
fn unsafe_only_in_the_io_layer_with_safety_comments() {
    report(
        "`unsafe` only in UNSAFE_ALLOWED, and every `unsafe {` has a `// SAFETY:` comment",
        &unsafe_violations(&source_files()),
    );
}

fn panic_violations(files: &[SourceFile]) -> Vec<String> {
    let mut v = Vec::new();
    let mut used = vec![false; PANIC_ALLOWED.len()];
    let library = files
        .iter()
        .filter(|f| f.path.starts_with("src/") && f.path != "src/main.rs");
    for file in library {
        for (at, what) in panic_calls(file) {
            let line = file.text.lines().nth(file.line(at) - 1).unwrap_or_default();
            let allowed = PANIC_ALLOWED
                .iter()
                .position(|&(p, needle, _)| p == file.path && line.contains(needle));
            match allowed {
                Some(k) => used[k] = true,
                None => v.push(format!("{}: {what} in library code", file.at(at))),
            }
        }
    }
    for (k, &(path, needle, _)) in PANIC_ALLOWED.iter().enumerate() {
        if !used[k] {
            v.push(format!(
                "PANIC_ALLOWED: {path} `{needle}` no longer matches; remove it from the list"
            ));
        }
    }
    v
}

#[test]
fn library_code_does_not_unwrap_or_expect_without_an_invariant() {
    report(
        "library code (src/, non-test) has no `.unwrap()`; `.expect(..)` states an invariant",
        &panic_violations(&source_files()),
    );
}

// ---------------------------------------------------------------------------------------------
// The scanner's own tests, on tiny inline snippets.
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod scanner {
    use super::*;

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile::new(path, text.to_string())
    }

    #[test]
    fn mask_blanks_comments_strings_and_chars_but_keeps_offsets() {
        let src = "let a = \"{ // }\"; // {\nlet b = '{'; /* { /* } */ */ let c = r#\"}\"#;\nfn f<'a>(x: &'a u8) {}";
        let m = mask(src);
        assert_eq!(m.len(), src.len());
        assert_eq!(m.matches('\n').count(), 2);
        assert!(!m.contains("//"));
        assert_eq!(m.matches('{').count(), 1, "{m}");
        assert_eq!(m.matches('}').count(), 1, "{m}");
        assert!(m.contains("&'a u8"), "lifetimes stay: {m}");
        assert!(mask("let s = \"a\\\"{\";").ends_with("\"    \";"));
        assert_eq!(mask("let c = '\\'';"), "let c = '  ';");
        assert_eq!(mask("let c = b'\"'; {"), "let c = b' '; {");
    }

    #[test]
    fn function_length_counts_fn_line_to_closing_brace_ignoring_literals() {
        let src = "fn short() {}\n\nfn long() {\n    let s = \"}}}\";\n    // }\n    let c = '}';\n}\ntrait T { fn decl(&self); }\nfn ptr(f: fn(u8) -> u8) -> u8 {\n    f(1)\n}\n";
        let f = file("src/x.rs", src);
        let got: Vec<(String, usize)> = functions(&f)
            .into_iter()
            .map(|f| (f.name, f.lines))
            .collect();
        let want = [("short", 1), ("long", 5), ("ptr", 3)];
        let want: Vec<(String, usize)> = want.iter().map(|&(n, l)| (n.to_string(), l)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn cfg_test_items_are_skipped() {
        let src = "use a::b;\n#[cfg(test)]\nmod tests {\n    use std::net::TcpStream;\n    fn f() { x.unwrap(); }\n}\n#[cfg(test)]\nuse std::fs;\n#[cfg(test)]\n#[allow(dead_code)]\nfn helper() { std::thread::spawn(|| {}); }\nfn live() { y.unwrap(); }\n";
        let f = file("src/core/x.rs", src);
        let tail = src.find("fn live").unwrap();
        assert!(f.in_test(src.find("TcpStream").unwrap()));
        assert!(f.in_test(src.find("std::fs").unwrap()));
        assert!(f.in_test(src.find("std::thread").unwrap()));
        assert!(!f.in_test(tail));
        assert!(!f.in_test(0));
        let calls: Vec<usize> = panic_calls(&f)
            .into_iter()
            .map(|(at, _)| f.line(at))
            .collect();
        assert_eq!(calls, [12]);
        let paths: Vec<String> = paths_used(&f).into_iter().map(|(_, p)| p).collect();
        assert_eq!(paths, ["a::b"]);
    }

    #[test]
    fn use_trees_expand_and_relative_paths_resolve() {
        assert_eq!(
            expand_use_tree("std::{net::{TcpStream, SocketAddr as A}, fs, time::{self, Instant}}"),
            [
                "std::net::TcpStream",
                "std::net::SocketAddr",
                "std::fs",
                "std::time",
                "std::time::Instant"
            ]
        );
        assert_eq!(module_path("src/cluster/wire.rs"), "crate::cluster::wire");
        assert_eq!(module_path("src/core/mod.rs"), "crate::core");
        assert_eq!(
            resolve("super::node::X", "crate::cluster::wire"),
            "crate::cluster::node::X"
        );
        assert_eq!(
            resolve("super::super::server", "crate::core::x"),
            "crate::server"
        );
        assert_eq!(resolve("self::a", "crate::core"), "crate::core::a");
        assert_eq!(resolve("::libc::close", "crate::core"), "libc::close");
    }

    #[test]
    fn import_detection_finds_use_and_qualified_paths_but_not_literals() {
        let src = "use super::{node::Node, wire};\nuse std::net::SocketAddr;\nuse crate::core::Sink;\nfn f() {\n    let t = std::time::Instant::now();\n    let s = \"std::fs::read\"; // libc::close\n    let u = ::socket2::SockRef::from(&x);\n    let v = Vec::<u8>::new();\n}\n";
        let f = file("src/cluster/membership.rs", src);
        let bad: Vec<(usize, &str)> = paths_used(&f)
            .into_iter()
            .filter_map(|(at, p)| forbidden_prefix(&p).map(|pre| (f.line(at), pre)))
            .collect();
        assert_eq!(
            bad,
            [
                (1, "crate::cluster::node"),
                (5, "std::time::Instant"),
                (7, "socket2")
            ]
        );
        assert!(is_sans_io(&f));
        assert!(is_sans_io(&file(
            "src/cluster/new.rs",
            "//! sans-IO: new lane.\n"
        )));
        assert!(!is_sans_io(&file("src/cluster/node.rs", "//! Node.\n")));
    }

    #[test]
    fn sans_io_roots_are_dir_mod_files_and_single_files() {
        assert!(is_sans_io_root(&file("src/core/mod.rs", "")));
        assert!(!is_sans_io_root(&file("src/core/router.rs", "")));
        assert!(is_sans_io_root(&file("src/config.rs", "")));
        assert!(is_sans_io_root(&file("src/cluster/control.rs", "")));
        assert!(!is_sans_io_root(&file(
            "src/protocol/stream.rs",
            "//! sans-IO\n"
        )));
        assert!(!is_sans_io_root(&file("src/server/mod.rs", "")));
    }

    #[test]
    fn unsafe_blocks_need_a_safety_comment_close_above() {
        let src = "// SAFETY: ok\nlet a = unsafe { f() };\n// SAFETY: long\n// more\n// more\n// more\n// more\nunsafe {\n}\nlet x = 1;\n\n\n\nlet b = unsafe { g() };\nunsafe fn h() {}\nlet s = \"unsafe {\";\n";
        let f = file("src/server/x.rs", src);
        let blocks: Vec<(usize, bool)> = unsafe_blocks(&f)
            .into_iter()
            .map(|at| (f.line(at), has_safety_comment(&f, at)))
            .collect();
        assert_eq!(blocks, [(2, true), (8, true), (14, false)]);
        assert!(unsafe_allowed("src/server/worker.rs"));
        assert!(unsafe_allowed("cli/src/signals.rs"));
        assert!(!unsafe_allowed("cli/src/serve.rs"));
    }

    #[test]
    fn layer_rule_catches_a_module_reaching_up() {
        let up = file(
            "src/cluster/x.rs",
            "use crate::server::Shared;\nuse crate::core::Tables;\n",
        );
        let v = layer_violations(&[up]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("crate::server"), "{v:?}");
        let down = file(
            "src/server/x.rs",
            "use crate::cluster::node::ClusterNode;\n",
        );
        assert!(layer_violations(&[down]).is_empty());
    }

    #[test]
    fn expect_needs_a_message_stating_the_invariant() {
        let src = "fn f() {\n    a.expect(\"never empty\");\n    b.expect(\"bad\");\n    c.expect(&msg);\n    d\n        .unwrap();\n    e.unwrap_or(1);\n}\n";
        let f = file("src/x.rs", src);
        let lines: Vec<usize> = panic_calls(&f)
            .into_iter()
            .map(|(at, _)| f.line(at))
            .collect();
        assert_eq!(lines, [6, 3, 4]);
    }
}

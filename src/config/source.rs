//! Reading `pipeline.yaml` as a tree of values that remembers where each key and
//! value stood in the file, so every problem can be reported with `file:line:column`.

use std::collections::HashMap;
use std::fmt;

use serde_yaml::{Mapping, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into the document.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path into the document, such as `topics.ride_events.partitions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Seg>);

impl Path {
    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// Builds a path from dotted text (`a.b.c`); no indices.
    pub fn parse(dotted: &str) -> Path {
        Path(dotted.split('.').map(|s| Seg::Key(s.to_string())).collect())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// A 1-based position in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// Where each path's key and value start in the file.
#[derive(Debug, Default)]
pub struct PosIndex {
    keys: HashMap<Path, Pos>,
    values: HashMap<Path, Pos>,
}

impl PosIndex {
    /// Builds the index from YAML text. Syntax errors are left to the value parser,
    /// which reports them with their own position.
    pub fn build(text: &str) -> PosIndex {
        let mut builder = IndexBuilder::default();
        let mut parser = Parser::new_from_str(text);
        // A syntax error simply stops the index early.
        let _ = parser.load(&mut builder, false);
        builder.index
    }

    /// The position of the key that ends `path` (or, failing that, of its value).
    pub fn key_pos(&self, path: &Path) -> Option<Pos> {
        self.keys
            .get(path)
            .or_else(|| self.values.get(path))
            .copied()
    }

    /// The position of the value at `path` (or, failing that, of its key).
    pub fn value_pos(&self, path: &Path) -> Option<Pos> {
        self.values
            .get(path)
            .or_else(|| self.keys.get(path))
            .copied()
    }

    /// The position of `path`, or of its nearest ancestor present in the file.
    pub fn nearest(&self, path: &Path, want_key: bool) -> Option<Pos> {
        let mut p = path.clone();
        loop {
            let found = if want_key {
                self.key_pos(&p)
            } else {
                self.value_pos(&p)
            };
            if found.is_some() || p.0.is_empty() {
                return found;
            }
            p.0.pop();
        }
    }
}

enum Frame {
    Map {
        path: Path,
        pending_key: Option<String>,
    },
    Seq {
        path: Path,
        next: usize,
    },
}

#[derive(Default)]
struct IndexBuilder {
    index: PosIndex,
    stack: Vec<Frame>,
}

impl IndexBuilder {
    /// Called for each node; returns the path of that node if it is a value (or
    /// `None` when it is a mapping key, which is recorded here).
    fn place(&mut self, scalar: Option<&str>, pos: Pos) -> Option<Path> {
        match self.stack.last_mut() {
            None => Some(Path::default()),
            Some(Frame::Seq { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, pending_key }) => match pending_key.take() {
                Some(k) => Some(path.key(&k)),
                None => {
                    let key = scalar.unwrap_or("").to_string();
                    self.index.keys.insert(path.key(&key), pos);
                    *pending_key = Some(key);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for IndexBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match ev {
            Event::Scalar(s, ..) => {
                if let Some(p) = self.place(Some(&s), pos) {
                    self.index.values.insert(p, pos);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.place(None, pos) {
                    self.index.values.insert(p, pos);
                }
            }
            Event::MappingStart(..) => {
                if let Some(p) = self.place(None, pos) {
                    self.index.values.insert(p.clone(), pos);
                    self.stack.push(Frame::Map {
                        path: p,
                        pending_key: None,
                    });
                }
            }
            Event::SequenceStart(..) => {
                if let Some(p) = self.place(None, pos) {
                    self.index.values.insert(p.clone(), pos);
                    self.stack.push(Frame::Seq { path: p, next: 0 });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// Returns the value at `path`, if any.
#[cfg(test)]
pub fn get<'a>(root: &'a Value, path: &Path) -> Option<&'a Value> {
    let mut v = root;
    for seg in &path.0 {
        v = match (seg, v) {
            (Seg::Key(k), Value::Mapping(m)) => m.get(k.as_str())?,
            (Seg::Index(i), Value::Sequence(s)) => s.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Removes the value at `path`; returns whether something was removed.
pub fn remove(root: &mut Value, path: &Path) -> bool {
    let Some((last, parent)) = path.0.split_last() else {
        return false;
    };
    let mut v = root;
    for seg in parent {
        v = match (seg, v) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(x) => x,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(x) => x,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, v) {
        (Seg::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (Seg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
            true
        }
        _ => false,
    }
}

/// Sets the value at `path`, creating mappings on the way.
pub fn set(root: &mut Value, path: &Path, value: Value) {
    let mut v = root;
    for seg in &path.0 {
        let Seg::Key(k) = seg else { return };
        if !v.is_mapping() {
            *v = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(m) = v else { return };
        v = m.entry(Value::String(k.clone())).or_insert(Value::Null);
    }
    *v = value;
}

/// Deep-merges `overlay` into `base`: mappings merge key by key, anything else is
/// replaced. Records, for each replaced path, where it came from in the file.
pub fn merge(
    base: &mut Value,
    overlay: &Value,
    here: &Path,
    from: &Path,
    origin: &mut Vec<(Path, Path)>,
) {
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, ov) in o {
                let key = k
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k:?}"));
                let (here_k, from_k) = (here.key(&key), from.key(&key));
                match b.get_mut(k) {
                    Some(bv) if bv.is_mapping() && ov.is_mapping() => {
                        merge(bv, ov, &here_k, &from_k, origin)
                    }
                    _ => {
                        b.insert(k.clone(), ov.clone());
                        origin.push((here_k, from_k));
                    }
                }
            }
        }
        (b, o) => {
            *b = o.clone();
            origin.push((here.clone(), from.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_records_keys_and_values() {
        let text = "a:\n  b: 1\n  list:\n    - x: 2\n";
        let idx = PosIndex::build(text);
        let p = Path::parse("a.b");
        assert_eq!(idx.key_pos(&p), Some(Pos { line: 2, col: 3 }));
        assert_eq!(idx.value_pos(&p), Some(Pos { line: 2, col: 6 }));
        let x = Path::parse("a.list").index(0).key("x");
        assert_eq!(idx.key_pos(&x), Some(Pos { line: 4, col: 7 }));
    }

    #[test]
    fn merge_replaces_scalars_and_merges_maps() {
        let mut base: Value = serde_yaml::from_str("a: {b: 1, c: 2}\nd: 3").unwrap();
        let over: Value = serde_yaml::from_str("a: {c: 9}").unwrap();
        let mut origin = Vec::new();
        merge(
            &mut base,
            &over,
            &Path::default(),
            &Path::parse("profiles.p"),
            &mut origin,
        );
        assert_eq!(get(&base, &Path::parse("a.c")), Some(&Value::from(9)));
        assert_eq!(get(&base, &Path::parse("a.b")), Some(&Value::from(1)));
        assert_eq!(
            origin,
            vec![(Path::parse("a.c"), Path::parse("profiles.p.a.c"))]
        );
    }
}

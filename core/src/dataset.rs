//! Interaction logs: reading them (MovieLens `u.data` and `ratings.dat`, CSV
//! with a header) and the dense, string-keyed table every trainer and
//! evaluation works on.
//!
//! Every malformed line is an error naming the file, the line and the field;
//! nothing is silently skipped. Empty input is an error. Ratings must be
//! finite numbers; implicit data simply has no rating column.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a as a `Hasher`: much faster than SipHash on short id strings. Ids
/// come from the operator's own logs, so hash flooding is not a concern.
#[derive(Debug)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type IdIndex = HashMap<String, u32, BuildHasherDefault<Fnv64>>;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A problem in an input file, with its place.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {problem}")]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
}

/// User–item interactions with dense indices. Indices are assigned in order
/// of first appearance, so the same file always gives the same indices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interactions {
    pub user_ids: Vec<String>,
    pub item_ids: Vec<String>,
    pub users: Vec<u32>,
    pub items: Vec<u32>,
    /// Explicit ratings, one per interaction; `None` for implicit data.
    pub ratings: Option<Vec<f32>>,
    /// Unix seconds, one per interaction, if the input has them.
    pub timestamps: Option<Vec<i64>>,
}

impl Interactions {
    pub fn len(&self) -> usize {
        self.users.len()
    }
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }
    /// Rating of interaction `i` (1.0 for implicit data).
    pub fn rating(&self, i: usize) -> f32 {
        self.ratings.as_ref().map_or(1.0, |r| r[i])
    }
    /// Mean rating (1.0 for implicit data, 0 when empty).
    pub fn mean_rating(&self) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        (0..self.len())
            .map(|i| f64::from(self.rating(i)))
            .sum::<f64>()
            / self.len() as f64
    }

    /// The interactions at `rows` (in that order), with the same id tables.
    pub fn select(&self, rows: &[usize]) -> Interactions {
        Interactions {
            user_ids: self.user_ids.clone(),
            item_ids: self.item_ids.clone(),
            users: rows.iter().map(|&i| self.users[i]).collect(),
            items: rows.iter().map(|&i| self.items[i]).collect(),
            ratings: self
                .ratings
                .as_ref()
                .map(|r| rows.iter().map(|&i| r[i]).collect()),
            timestamps: self
                .timestamps
                .as_ref()
                .map(|t| rows.iter().map(|&i| t[i]).collect()),
        }
    }

    /// Per user, the indices of their interactions, in input order.
    pub fn rows_by_user(&self) -> Vec<Vec<usize>> {
        let mut by_user = vec![Vec::new(); self.n_users()];
        for (i, &u) in self.users.iter().enumerate() {
            by_user[u as usize].push(i);
        }
        by_user
    }

    /// A short stable fingerprint of the data: the id tables (FNV-1a over
    /// their bytes), then every interaction's indices, rating and time
    /// folded in as 64-bit words. Same log, same fingerprint.
    pub fn fingerprint(&self) -> String {
        let mut fnv = Fnv64::default();
        for id in self.user_ids.iter().chain(&self.item_ids) {
            fnv.write(id.as_bytes());
            fnv.write(&[0]);
        }
        let mut h = fnv.finish();
        let mut mix = |word: u64| {
            h = (h ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 29;
        };
        for i in 0..self.len() {
            mix(u64::from(self.users[i]) << 32 | u64::from(self.items[i]));
            mix(u64::from(self.rating(i).to_bits()));
            if let Some(t) = &self.timestamps {
                mix(t[i] as u64);
            }
        }
        format!(
            "v2:{h:016x}:{}x{}:{}",
            self.n_users(),
            self.n_items(),
            self.len()
        )
    }
}

/// Builds an [`Interactions`] row by row, assigning dense indices.
#[derive(Debug, Default)]
pub struct InteractionsBuilder {
    out: Interactions,
    user_index: IdIndex,
    item_index: IdIndex,
}

impl InteractionsBuilder {
    pub fn new(with_ratings: bool, with_timestamps: bool) -> Self {
        let out = Interactions {
            ratings: with_ratings.then(Vec::new),
            timestamps: with_timestamps.then(Vec::new),
            ..Interactions::default()
        };
        Self {
            out,
            ..Self::default()
        }
    }

    pub fn push(&mut self, user: &str, item: &str, rating: Option<f32>, timestamp: Option<i64>) {
        let u = intern(&mut self.user_index, &mut self.out.user_ids, user);
        let i = intern(&mut self.item_index, &mut self.out.item_ids, item);
        self.out.users.push(u);
        self.out.items.push(i);
        if let (Some(r), Some(v)) = (self.out.ratings.as_mut(), rating) {
            r.push(v);
        }
        if let (Some(t), Some(v)) = (self.out.timestamps.as_mut(), timestamp) {
            t.push(v);
        }
    }

    pub fn finish(self) -> Interactions {
        self.out
    }
}

fn intern(index: &mut IdIndex, ids: &mut Vec<String>, id: &str) -> u32 {
    if let Some(&i) = index.get(id) {
        return i;
    }
    let i = ids.len() as u32;
    ids.push(id.to_string());
    index.insert(id.to_string(), i);
    i
}

/// Which file format to read.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// MovieLens: `u.data` (tab-separated) or `ratings.dat` (`::`), detected
    /// from the first line; `user item rating timestamp`, no header.
    MovieLens,
    /// CSV with a header row.
    Csv(CsvOptions),
}

/// Column names and delimiter of a CSV input. Rating and time columns are
/// optional: without a rating column the data is implicit.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvOptions {
    pub user_column: String,
    pub item_column: String,
    pub rating_column: Option<String>,
    pub time_column: Option<String>,
    pub delimiter: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            user_column: "user".into(),
            item_column: "item".into(),
            rating_column: Some("rating".into()),
            time_column: Some("timestamp".into()),
            delimiter: b',',
        }
    }
}

/// Reads an interaction log.
pub fn read(path: &Path, format: &Format) -> Result<Interactions, DatasetError> {
    let file = std::fs::File::open(path).map_err(|source| DatasetError::Io {
        path: path.into(),
        source,
    })?;
    read_from(path, BufReader::with_capacity(1 << 20, file), format)
}

/// Reads an interaction log from any reader (`path` names it in errors).
pub fn read_from(
    path: &Path,
    reader: impl Read,
    format: &Format,
) -> Result<Interactions, DatasetError> {
    let out = match format {
        Format::MovieLens => read_movielens(path, BufReader::new(reader))?,
        Format::Csv(options) => read_csv(path, BufReader::new(reader), options)?,
    };
    if out.is_empty() {
        return Err(DatasetError::File {
            path: path.into(),
            problem: "no interactions".into(),
        });
    }
    Ok(out)
}

fn line_error(path: &Path, line: usize, problem: String) -> DatasetError {
    DatasetError::Line {
        path: path.into(),
        line,
        problem,
    }
}

fn parse_rating(path: &Path, line: usize, field: &str, text: &str) -> Result<f32, DatasetError> {
    match text.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(line_error(
            path,
            line,
            format!("field {field}: rating {text:?} is not a finite number"),
        )),
        Err(_) => Err(line_error(
            path,
            line,
            format!("field {field}: rating {text:?} is not a number"),
        )),
    }
}

fn parse_time(path: &Path, line: usize, field: &str, text: &str) -> Result<i64, DatasetError> {
    text.trim().parse::<i64>().map_err(|_| {
        line_error(
            path,
            line,
            format!("field {field}: timestamp {text:?} is not an integer (Unix seconds)"),
        )
    })
}

/// Calls `f(line_number, line)` for every line, reusing one buffer (no
/// allocation per line: logs run to tens of millions of lines).
fn for_each_line(
    path: &Path,
    mut reader: impl BufRead,
    mut f: impl FnMut(usize, &str) -> Result<(), DatasetError>,
) -> Result<(), DatasetError> {
    let mut line = String::new();
    let mut line_no = 0;
    loop {
        line.clear();
        line_no += 1;
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => f(line_no, line.trim_end_matches(['\n', '\r']))?,
            Err(e) => return Err(line_error(path, line_no, format!("cannot read: {e}"))),
        }
    }
}

fn read_movielens(path: &Path, reader: impl BufRead) -> Result<Interactions, DatasetError> {
    let mut builder = InteractionsBuilder::new(true, true);
    let mut separator: Option<&str> = None;
    for_each_line(path, reader, |line_no, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let sep = *separator.get_or_insert(if line.contains("::") { "::" } else { "\t" });
        // Four fields into a fixed array: no allocation per line.
        let mut fields = [""; 4];
        let mut count = 0;
        for part in line.split(sep) {
            if let Some(slot) = fields.get_mut(count) {
                *slot = part;
            }
            count += 1;
        }
        if count != 4 {
            return Err(line_error(
                path,
                line_no,
                format!(
                    "expected 4 fields separated by {sep:?} (user, item, rating, timestamp), found {count}"
                ),
            ));
        }
        for (f, name) in [(0, "1 (user)"), (1, "2 (item)")] {
            if fields[f].trim().is_empty() {
                return Err(line_error(path, line_no, format!("field {name} is empty")));
            }
        }
        let rating = parse_rating(path, line_no, "3", fields[2])?;
        let time = parse_time(path, line_no, "4", fields[3])?;
        builder.push(fields[0].trim(), fields[1].trim(), Some(rating), Some(time));
        Ok(())
    })?;
    Ok(builder.finish())
}

/// Splits one CSV record (RFC 4180: quoted fields may hold the delimiter and
/// doubled quotes). Records spanning lines are not supported: a quote left
/// open at the end of the line is an error.
pub fn split_csv_line(line: &str, delimiter: u8) -> Result<Vec<String>, String> {
    let delimiter = delimiter as char;
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => {
                quoted = false;
                match chars.peek() {
                    None => {}
                    Some(&next) if next == delimiter => {}
                    Some(&next) => {
                        return Err(format!("unexpected {next:?} after a closing quote"));
                    }
                }
            }
            (false, c) if c == delimiter => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            (_, c) => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("a quoted field is not closed on this line".into());
    }
    fields.push(field);
    Ok(fields)
}

fn read_csv(
    path: &Path,
    reader: impl BufRead,
    options: &CsvOptions,
) -> Result<Interactions, DatasetError> {
    let mut lines = reader.lines().enumerate();
    let header = loop {
        match lines.next() {
            None => {
                return Err(DatasetError::File {
                    path: path.into(),
                    problem: "empty file: no header row".into(),
                });
            }
            Some((n, line)) => {
                let line =
                    line.map_err(|e| line_error(path, n + 1, format!("cannot read: {e}")))?;
                if !line.trim().is_empty() {
                    break split_csv_line(
                        line.trim_end_matches('\r').trim_start_matches('\u{feff}'),
                        options.delimiter,
                    )
                    .map_err(|e| line_error(path, n + 1, format!("header: {e}")))?;
                }
            }
        }
    };
    let column = |name: &str| -> Result<usize, DatasetError> {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| DatasetError::File {
                path: path.into(),
                problem: format!(
                    "no column {name:?} in the header (columns: {})",
                    header.join(", ")
                ),
            })
    };
    let user_col = column(&options.user_column)?;
    let item_col = column(&options.item_column)?;
    let rating_col = options.rating_column.as_deref().map(&column).transpose()?;
    let time_col = options.time_column.as_deref().map(&column).transpose()?;
    let mut builder = InteractionsBuilder::new(rating_col.is_some(), time_col.is_some());
    for (n, line) in lines {
        let line_no = n + 1;
        let line = line.map_err(|e| line_error(path, line_no, format!("cannot read: {e}")))?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields =
            split_csv_line(line, options.delimiter).map_err(|e| line_error(path, line_no, e))?;
        if fields.len() != header.len() {
            return Err(line_error(
                path,
                line_no,
                format!(
                    "{} fields, but the header has {}",
                    fields.len(),
                    header.len()
                ),
            ));
        }
        let named = |col: usize| format!("{} ({})", col + 1, header[col].trim());
        for col in [user_col, item_col] {
            if fields[col].trim().is_empty() {
                return Err(line_error(
                    path,
                    line_no,
                    format!("field {} is empty", named(col)),
                ));
            }
        }
        let rating = rating_col
            .map(|c| parse_rating(path, line_no, &named(c), &fields[c]))
            .transpose()?;
        let time = time_col
            .map(|c| parse_time(path, line_no, &named(c), &fields[c]))
            .transpose()?;
        builder.push(
            fields[user_col].trim(),
            fields[item_col].trim(),
            rating,
            time,
        );
    }
    Ok(builder.finish())
}

/// How repeated (user, item) pairs are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Duplicates {
    /// Keep every row.
    Keep,
    /// The last row (by time, then input order) wins.
    LastWins,
    /// One row whose rating is the sum of the repeats (latest timestamp).
    Sum,
}

/// Cleaning steps users expect, applied in this order: time window, rating
/// threshold, duplicate handling, then minimum interactions per user and per
/// item (repeated until both hold: a k-core).
#[derive(Clone, Debug, PartialEq)]
pub struct Cleaning {
    /// Keep interactions with `from <= timestamp < until` (needs timestamps).
    pub time_window: (Option<i64>, Option<i64>),
    /// Drop interactions rated below this (for implicit use of ratings).
    pub min_rating: Option<f32>,
    pub duplicates: Duplicates,
    pub min_user_interactions: usize,
    pub min_item_interactions: usize,
}

impl Default for Cleaning {
    fn default() -> Self {
        Self {
            time_window: (None, None),
            min_rating: None,
            duplicates: Duplicates::Keep,
            min_user_interactions: 0,
            min_item_interactions: 0,
        }
    }
}

/// Applies `cleaning`; ids that lose all their interactions are dropped and
/// indices renumbered densely (order of first appearance is kept).
pub fn clean(data: &Interactions, cleaning: &Cleaning) -> Result<Interactions, String> {
    let (from, until) = cleaning.time_window;
    if (from.is_some() || until.is_some()) && data.timestamps.is_none() {
        return Err("a time window needs timestamps, and this data has none".into());
    }
    let mut keep: Vec<usize> = (0..data.len())
        .filter(|&i| {
            let t = data.timestamps.as_ref().map_or(0, |t| t[i]);
            from.is_none_or(|f| t >= f) && until.is_none_or(|u| t < u)
        })
        .filter(|&i| cleaning.min_rating.is_none_or(|m| data.rating(i) >= m))
        .collect();

    let mut summed: Option<HashMap<usize, f32>> = None;
    if cleaning.duplicates != Duplicates::Keep {
        // Stable order: by time (if any), then input position; the last of
        // each pair wins and carries the sum when summing.
        let time = |i: usize| data.timestamps.as_ref().map_or(0, |t| t[i]);
        let mut ordered = keep.clone();
        ordered.sort_by_key(|&i| (time(i), i));
        let mut last: HashMap<(u32, u32), usize> = HashMap::new();
        let mut sums: HashMap<(u32, u32), f32> = HashMap::new();
        for &i in &ordered {
            let pair = (data.users[i], data.items[i]);
            last.insert(pair, i);
            *sums.entry(pair).or_insert(0.0) += data.rating(i);
        }
        keep.retain(|&i| last[&(data.users[i], data.items[i])] == i);
        if cleaning.duplicates == Duplicates::Sum {
            summed = Some(
                keep.iter()
                    .map(|&i| (i, sums[&(data.users[i], data.items[i])]))
                    .collect(),
            );
        }
    }

    loop {
        let mut per_user = vec![0usize; data.n_users()];
        let mut per_item = vec![0usize; data.n_items()];
        for &i in &keep {
            per_user[data.users[i] as usize] += 1;
            per_item[data.items[i] as usize] += 1;
        }
        let before = keep.len();
        keep.retain(|&i| {
            per_user[data.users[i] as usize] >= cleaning.min_user_interactions
                && per_item[data.items[i] as usize] >= cleaning.min_item_interactions
        });
        if keep.len() == before {
            break;
        }
    }
    if keep.is_empty() {
        return Err("no interactions left after cleaning".into());
    }
    let mut builder = InteractionsBuilder::new(data.ratings.is_some(), data.timestamps.is_some());
    for &i in &keep {
        let rating = data
            .ratings
            .as_ref()
            .map(|_| summed.as_ref().map_or(data.rating(i), |s| s[&i]));
        builder.push(
            &data.user_ids[data.users[i] as usize],
            &data.item_ids[data.items[i] as usize],
            rating,
            data.timestamps.as_ref().map(|t| t[i]),
        );
    }
    Ok(builder.finish())
}

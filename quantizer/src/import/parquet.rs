//! Spark MLlib ALS models: `ALSModel.save(path)` writes `path/userFactors/`
//! and `path/itemFactors/`, each a directory of `part-*.parquet` files with
//! columns `id` (int or bigint) and `features` (array<float>).

use anyhow::{Context, Result, bail};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use std::path::{Path, PathBuf};

/// Ids (as strings) and row-major factors of one side.
#[derive(Debug)]
pub struct FactorTable {
    pub ids: Vec<String>,
    pub dims: usize,
    pub values: Vec<f32>,
}

/// Reads `dir/userFactors` and `dir/itemFactors`.
pub fn read_spark_als(dir: &Path) -> Result<(FactorTable, FactorTable)> {
    let users = read_side(&dir.join("userFactors"))?;
    let items = read_side(&dir.join("itemFactors"))?;
    if users.dims != items.dims {
        bail!(
            "{}: user factors have {} dimensions, item factors {}",
            dir.display(),
            users.dims,
            items.dims
        );
    }
    Ok((users, items))
}

/// One side: every `*.parquet` file of the directory (or the file itself),
/// in name order, rows concatenated.
pub fn read_side(path: &Path) -> Result<FactorTable> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut f: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot list", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        f.sort();
        f
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        bail!("{}: no .parquet files", path.display());
    }
    let mut table = FactorTable {
        ids: Vec::new(),
        dims: 0,
        values: Vec::new(),
    };
    for file in &files {
        read_file(file, &mut table).with_context(|| format!("{}", file.display()))?;
    }
    Ok(table)
}

/// A short name of a value's type for error messages (the crate's own is
/// private).
fn kind(field: &Field) -> String {
    let debug = format!("{field:?}");
    debug.split('(').next().unwrap_or("?").to_string()
}

fn read_file(path: &Path, table: &mut FactorTable) -> Result<()> {
    let reader = SerializedFileReader::new(std::fs::File::open(path)?)
        .context("not a readable Parquet file")?;
    for (n, row) in reader.get_row_iter(None)?.enumerate() {
        let row = row.with_context(|| format!("row {n}"))?;
        let (mut id, mut features) = (None, None);
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("id", Field::Int(v)) => id = Some(v.to_string()),
                ("id", Field::Long(v)) => id = Some(v.to_string()),
                ("id", Field::Str(v)) => id = Some(v.clone()),
                ("id", other) => bail!("row {n}: column id has type {}", kind(other)),
                ("features", Field::ListInternal(list)) => {
                    let mut v = Vec::with_capacity(list.len());
                    for (d, e) in list.elements().iter().enumerate() {
                        v.push(match e {
                            Field::Float(x) => *x,
                            Field::Double(x) => *x as f32,
                            other => bail!("row {n}: features[{d}] is {}, need float", kind(other)),
                        });
                    }
                    features = Some(v);
                }
                ("features", other) => bail!(
                    "row {n}: column features has type {}, need array<float>",
                    kind(other)
                ),
                _ => {}
            }
        }
        let id = id.with_context(|| format!("row {n}: no id column (need id, features)"))?;
        let features =
            features.with_context(|| format!("row {n}: no features column (need id, features)"))?;
        if table.ids.is_empty() {
            table.dims = features.len();
        }
        if features.len() != table.dims || table.dims == 0 {
            bail!(
                "row {n} (id {id}): {} features, expected {}",
                features.len(),
                table.dims
            );
        }
        if let Some(d) = features.iter().position(|x| !x.is_finite()) {
            bail!("row {n} (id {id}): features[{d}] is not finite");
        }
        table.ids.push(id);
        table.values.extend_from_slice(&features);
    }
    Ok(())
}

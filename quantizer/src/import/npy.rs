//! NumPy `.npy` reader for factor matrices (format version 1.0–3.0): a
//! little-endian float32 or float64, C-order, two-dimensional array. What
//! `implicit` (`model.user_factors`) and PyTorch (`tensor.numpy()`) save.
//! Anything else is rejected with the reason and the file name.

use anyhow::{Context, Result, bail};
use std::path::Path;

/// A row-major f32 matrix read from a `.npy` file.
#[derive(Debug)]
pub struct NpyMatrix {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
}

pub fn read_npy(path: &Path) -> Result<NpyMatrix> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    parse_npy(&bytes).with_context(|| format!("{}", path.display()))
}

pub fn parse_npy(bytes: &[u8]) -> Result<NpyMatrix> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not a .npy file (no \\x93NUMPY magic)");
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!("unsupported .npy format version {v}"),
    };
    let data_start = header_start + header_len;
    let header = bytes
        .get(header_start..data_start)
        .context("header runs past the end of the file")?;
    let header = std::str::from_utf8(header).context("header is not text")?;
    let descr = dict_value(header, "descr")?;
    let fortran = dict_value(header, "fortran_order")?;
    let shape = dict_value(header, "shape")?;
    let elem = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f4" => 4,
        "<f8" => 8,
        other => bail!(
            "dtype {other} is not supported: need little-endian float32 ('<f4') or float64 ('<f8')"
        ),
    };
    if fortran != "False" {
        bail!(
            "Fortran-order (column-major) arrays are not supported: save with np.ascontiguousarray"
        );
    }
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .with_context(|| format!("bad shape {shape}"))
        })
        .collect::<Result<_>>()?;
    let [rows, cols] = dims[..] else {
        bail!("shape {shape}: need a two-dimensional array (rows, factors)");
    };
    let data = &bytes[data_start.min(bytes.len())..];
    let want = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(elem))
        .context("shape overflows")?;
    if data.len() != want {
        bail!(
            "shape {shape} needs {want} bytes of data, the file has {}",
            data.len()
        );
    }
    let values: Vec<f32> = if elem == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect()
    };
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "value at row {}, column {} is {} (NaN or infinite; f64 values beyond the f32 range become infinite)",
            bad / cols.max(1),
            bad % cols.max(1),
            values[bad]
        );
    }
    Ok(NpyMatrix { rows, cols, values })
}

/// The text of `'key': value` in the header's Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let pat = format!("'{key}':");
    let start = header
        .find(&pat)
        .with_context(|| format!("header has no {key:?}"))?
        + pat.len();
    let rest = header[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    }
    .with_context(|| format!("header value of {key:?} is not terminated"))?;
    Ok(rest[..end].trim())
}

/// Writes a float32 C-order `.npy` (tests and fixtures).
pub fn encode_npy_f32(rows: usize, cols: usize, values: &[f32]) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = parse_npy(&encode_npy_f32(2, 3, &[1., 2., 3., 4., 5., 6.])).unwrap();
        assert_eq!((m.rows, m.cols), (2, 3));
        assert_eq!(m.values, vec![1., 2., 3., 4., 5., 6.]);
    }

    fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn err(bytes: &[u8]) -> String {
        format!("{:#}", parse_npy(bytes).unwrap_err())
    }

    #[test]
    fn rejects_what_it_cannot_serve() {
        let f = |s: &str| with_header(s, &[0; 16]);
        assert!(
            err(&f(
                "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }"
            ))
            .contains("'<i4'".trim_matches('\''))
        );
        assert!(
            err(&f(
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }"
            ))
            .contains(">f4")
        );
        assert!(
            err(&f(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }"
            ))
            .contains("Fortran")
        );
        assert!(
            err(&f(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (16,), }"
            ))
            .contains("two-dimensional")
        );
        assert!(
            err(&f(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }"
            ))
            .contains("needs 24 bytes")
        );
        assert!(err(b"PK\x03\x04 not numpy").contains("magic"));
        let nan = encode_npy_f32(2, 2, &[1.0, 2.0, f32::NAN, 0.0]);
        assert!(err(&nan).contains("row 1, column 0"));
        let inf = with_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }",
            &1e300f64.to_le_bytes(),
        );
        assert!(err(&inf).contains("infinite"));
    }
}

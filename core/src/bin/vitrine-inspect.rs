//! `vitrine-inspect [--verify] [--json] FILE`: print and verify an artifact.
//!
//! Exit codes: 0 valid (or printed without --verify), 1 invalid or unreadable,
//! 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: vitrine-inspect [--verify] [--json] FILE

Prints an artifact's header, sections (with checksum status) and metadata.
  --verify  exit with status 1 and a one-line reason if anything is wrong
  --json    print the report as JSON";

fn main() -> ExitCode {
    let (mut verify, mut json, mut file) = (false, false, None::<PathBuf>);
    for arg in std::env::args_os().skip(1) {
        match arg.to_str() {
            Some("--verify") => verify = true,
            Some("--json") => json = true,
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Some(flag) if flag.starts_with('-') => {
                eprintln!("vitrine-inspect: unknown flag {flag}\n{USAGE}");
                return ExitCode::from(2);
            }
            _ if file.is_none() => file = Some(arg.into()),
            _ => {
                eprintln!("vitrine-inspect: one FILE only\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(file) = file else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let report = match vitrine_core::inspect::inspect(&file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vitrine-inspect: {}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else if !verify {
        print!("{}", report.to_text());
    }
    match (&report.error, verify) {
        (Some(e), true) => {
            eprintln!("vitrine-inspect: {}: {e}", file.display());
            ExitCode::from(1)
        }
        (None, true) if !json => {
            let m = report.metadata.as_ref().map(|m| {
                format!(
                    "{} {} v{}",
                    m.kind.name(),
                    m.dtype.name(),
                    report.format_version
                )
            });
            println!("{}: ok ({})", file.display(), m.unwrap_or_default());
            ExitCode::SUCCESS
        }
        _ => ExitCode::SUCCESS,
    }
}

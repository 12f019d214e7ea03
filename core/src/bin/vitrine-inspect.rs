//! `vitrine-inspect [--verify] [--json] [--user ID [--k N]] FILE`: print and
//! verify an artifact, or show what it recommends for one user.
//!
//! Exit codes: 0 valid (or printed without --verify), 1 invalid or unreadable,
//! 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: vitrine-inspect [--verify] [--json] [--user ID [--k N]] FILE

Prints an artifact's header, sections (with checksum status) and metadata.
  --verify   exit with status 1 and a one-line reason if anything is wrong
  --json     print the report as JSON
  --user ID  instead, print the top-k items for user ID (seen items excluded)
  --k N      how many items for --user (default 10)";

fn main() -> ExitCode {
    let (mut verify, mut json, mut file) = (false, false, None::<PathBuf>);
    let (mut user, mut k) = (None::<String>, 10usize);
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--user") => match args.next().and_then(|a| a.into_string().ok()) {
                Some(u) => user = Some(u),
                None => return usage_error("--user needs an id"),
            },
            Some("--k") => match args
                .next()
                .and_then(|a| a.to_str().and_then(|s| s.parse().ok()))
            {
                Some(n) if n > 0 => k = n,
                _ => return usage_error("--k needs a positive number"),
            },
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
    if let Some(user) = user {
        return recommend(&file, &user, k, json);
    }
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

fn usage_error(problem: &str) -> ExitCode {
    eprintln!("vitrine-inspect: {problem}\n{USAGE}");
    ExitCode::from(2)
}

fn recommend(file: &std::path::Path, user: &str, k: usize, json: bool) -> ExitCode {
    let art = match vitrine_core::Artifact::open(file) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vitrine-inspect: {}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    match vitrine_core::inspect::recommend_for_user(&art, user, k) {
        Ok(items) if json => {
            let items: Vec<_> = items
                .iter()
                .map(|(id, score)| serde_json::json!({"id": id, "score": score}))
                .collect();
            println!("{}", serde_json::json!({"user": user, "items": items}));
            ExitCode::SUCCESS
        }
        Ok(items) => {
            println!("top {} for {user} ({}):", items.len(), art.metadata().name);
            for (rank, (id, score)) in items.iter().enumerate() {
                println!("{:>4}. {id:<20} {score:.4}", rank + 1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vitrine-inspect: {}: {e}", file.display());
            ExitCode::from(1)
        }
    }
}

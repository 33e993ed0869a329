//! `permgate routes import-openapi`: read OpenAPI specs (and a permission-group catalog), write a route
//! file, and report on stderr every operation skipped and why.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::config::SourceFile;
use crate::openapi::render::{Provenance, render, skipped_counts};
use crate::openapi::{Catalog, ImportOptions, Spec, import};

/// Arguments of `permgate routes import-openapi`.
#[derive(Debug, Args)]
pub struct ImportOpenApiArgs {
    /// OpenAPI 3 specs (JSON); a later spec overlays an earlier one operation by operation.
    #[arg(required = true, value_name = "SPEC.json")]
    pub specs: Vec<PathBuf>,
    /// Prepended to every path; default: the path of the first spec's `servers[0].url` (`/client/v4`).
    #[arg(long)]
    pub prefix: Option<String>,
    /// A policy file whose `permission_groups` resolve `x-api-token-group` names to keys.
    #[arg(long, value_name = "PERMISSION_GROUPS.yaml")]
    pub catalog: Option<PathBuf>,
    /// Write the route file here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs the import: exit 0 when the file was written (skips or not), 2 on a usage or input error.
pub fn run_import_openapi(args: &ImportOpenApiArgs) -> ExitCode {
    match import_openapi(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn import_openapi(args: &ImportOpenApiArgs) -> Result<(), String> {
    let mut specs = Vec::with_capacity(args.specs.len());
    for path in &args.specs {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let document = serde_json::from_str(&text)
            .map_err(|error| format!("{}: not JSON: {error}", path.display()))?;
        specs.push(Spec {
            label: file_name(path),
            document,
        });
    }
    let prefix = match &args.prefix {
        Some(prefix) => prefix.trim_end_matches('/').to_string(),
        None => specs
            .first()
            .map(|spec| server_prefix(&spec.document))
            .unwrap_or_default(),
    };
    if !prefix.is_empty() && !prefix.starts_with('/') {
        return Err(format!("--prefix {prefix:?} must start with /"));
    }
    let catalog = match &args.catalog {
        Some(path) => {
            let file = SourceFile::read(path).map_err(|error| error.to_string())?;
            Some(Catalog::from_policy_file(&file)?)
        }
        None => None,
    };
    let options = ImportOptions { prefix, catalog };
    let imported = import(&specs, &options);
    for skipped in &imported.skipped {
        eprintln!(
            "skipped: {} {}{}: {}",
            skipped.method,
            skipped.path,
            skipped
                .operation_id
                .as_deref()
                .map(|id| format!(" ({id})"))
                .unwrap_or_default(),
            skipped.reason
        );
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    let provenance = Provenance {
        specs: specs.iter().map(|spec| spec.label.clone()).collect(),
        prefix: options.prefix.clone(),
        catalog: args.catalog.as_deref().map(file_name),
    };
    let text = render(&imported, &provenance)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).map_err(|error| format!("{}: {error}", path.display()))?
        }
        None => super::print_out(&text),
    }
    eprintln!(
        "{} routes written{}; {} operations skipped, {} notes",
        imported.routes.len(),
        args.out
            .as_deref()
            .map(|path| format!(" to {}", path.display()))
            .unwrap_or_default(),
        imported.skipped.len(),
        imported.notes.len()
    );
    for (kind, count) in skipped_counts(&imported) {
        eprintln!("  {count:>4} skipped: {kind}");
    }
    Ok(())
}

/// The path part of the spec's first server URL (`https://api.cloudflare.com/client/v4` → `/client/v4`).
pub fn server_prefix(document: &serde_json::Value) -> String {
    let url = document
        .get("servers")
        .and_then(|servers| servers.get(0))
        .and_then(|server| server.get("url"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(slash) => after_scheme
            .get(slash..)
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string(),
        None => String::new(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

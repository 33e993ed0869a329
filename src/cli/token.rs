//! `permgate token new`: print a new token secret once, and the YAML entry that stores only its SHA-256.

use std::process::ExitCode;

use clap::Args;
use rand::RngExt;
use sha2::{Digest, Sha256};

use crate::auth::secret::encode_token;

/// Arguments of `permgate token new`.
#[derive(Debug, Args)]
pub struct NewTokenArgs {
    /// `user:<id>` or `account:<id>`.
    #[arg(long)]
    pub owner: String,
    /// A human name for the token.
    #[arg(long)]
    pub name: Option<String>,
}

/// Runs `permgate token new`.
pub fn run_new(args: &NewTokenArgs) -> ExitCode {
    match new_token(args) {
        Ok((secret, entry)) => {
            eprintln!(
                "New token secret (shown once; store it now, permgate keeps only its SHA-256):"
            );
            super::print_out(&format!("{secret}\n"));
            eprintln!();
            eprintln!("Add this entry to a tokens file, then give it policies:");
            super::print_out("\n");
            super::print_out(&entry);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

/// A new secret and its YAML entry.
pub fn new_token(args: &NewTokenArgs) -> Result<(String, String), String> {
    let (kind, id) = args
        .owner
        .split_once(':')
        .filter(|(kind, id)| matches!(*kind, "user" | "account") && !id.is_empty())
        .ok_or_else(|| format!("--owner {:?} must be user:<id> or account:<id>", args.owner))?;
    let mut random = [0u8; 24];
    rand::rng().fill(&mut random);
    let secret = encode_token(&random);
    let hash = hex::encode(Sha256::digest(secret.as_bytes()));
    let mut token_id = [0u8; 16];
    rand::rng().fill(&mut token_id);
    let name = args.name.clone().unwrap_or_else(|| "new token".to_string());
    let entry = format!(
        "  - id: {id_hex}\n    name: {name:?}\n    owner: {{ {kind}: {id} }}\n    secret_sha256: {hash}\n    status: active\n    policies: []   # add policies (SPEC §3.2 token form)\n",
        id_hex = hex::encode(token_id),
    );
    Ok((secret, entry))
}

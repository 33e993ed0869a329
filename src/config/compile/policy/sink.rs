//! The cross-file token sink: adds each file's compiled tokens in file order, with the checks that span
//! files (token ids and secret hashes are unique), or a previous compile's tokens of an unchanged file.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::compiler::{Compiler, TokenBatch, TokenOrigin};
use super::output::{Output, renumber_keysets};
use crate::config::error::{ConfigError, ErrorKind};
use crate::policy::model::{DigestMap, Owner, PolicySet, Token, TokenFileRecord, TokenGate};

/// Where the compiled tokens go, in file order, with the checks that span files: token ids and secret
/// hashes are unique.
pub struct TokenSink<'a> {
    pub(super) out: Output,
    pub(super) tokens: Vec<Arc<Token>>,
    pub(super) token_gates: Vec<TokenGate>,
    pub(super) token_by_hash: DigestMap<u32>,
    /// The token ids and secret hashes seen, for duplicate errors (the raw tokens are gone by the time a
    /// later file comes). A kept token's id is found through `kept_ids` (positions in `tokens`, hashed by the token's own id:
    /// no second copy of a million ids), its secret hash through `token_by_hash`, and where it was defined
    /// in `kept_origins`; the ids and hashes of tokens not kept (invalid, or a duplicate of the other) are
    /// few, and kept in their own maps.
    pub(super) kept_ids: hashbrown::HashTable<u32>,
    pub(super) kept_origins: Vec<TokenOrigin<'a>>,
    pub(super) other_ids: FxHashMap<Box<str>, TokenOrigin<'a>>,
    pub(super) other_secrets: FxHashMap<[u8; 32], TokenOrigin<'a>>,
    /// The shared id of each token owner (see [`TokenGate::owner_id`]).
    pub(super) owner_ids: FxHashMap<Owner, Arc<str>>,
    /// One per file added, in order.
    pub(super) records: Vec<TokenFileRecord>,
}

impl<'a> Compiler<'a> {
    /// The sink for the tokens, with room for `expected` of them (their count is known before they are
    /// parsed, so the token tables are sized once instead of growing by doubling).
    pub fn token_sink(&mut self, expected: usize) -> TokenSink<'a> {
        // What the entities alone gave, for a later compile that resumes from this one's entities.
        self.set.entity_warnings = u32::try_from(self.out.warnings.len()).unwrap_or(u32::MAX);
        let mut used = self.out.used_groups.clone();
        used.sort_unstable();
        used.dedup();
        self.set.entity_used_groups = used.into_boxed_slice();
        let mut token_by_hash = DigestMap::default();
        token_by_hash.reserve(expected);
        let kept_ids = hashbrown::HashTable::with_capacity(expected);
        TokenSink {
            out: std::mem::take(&mut self.out),
            tokens: Vec::with_capacity(expected),
            token_gates: Vec::with_capacity(expected),
            token_by_hash,
            kept_ids,
            kept_origins: Vec::with_capacity(expected),
            other_ids: FxHashMap::default(),
            other_secrets: FxHashMap::default(),
            owner_ids: FxHashMap::default(),
            records: Vec::new(),
        }
    }

    /// The compiled set, or every error met.
    pub fn finish(self, sink: TokenSink<'a>) -> Result<PolicySet, Vec<ConfigError>> {
        let Compiler {
            mut set,
            keys,
            children,
            ..
        } = self;
        set.children = children
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let TokenSink {
            out,
            tokens,
            token_gates,
            token_by_hash,
            records,
            ..
        } = sink;
        if !out.errors.is_empty() {
            return Err(out.errors);
        }
        for position in out.used_groups {
            if let Some(group) = set.groups.get_mut(position) {
                group.used = true;
            }
        }
        set.keys = keys;
        set.keysets = out.keysets;
        set.keyset_groups = out.keyset_groups;
        set.warnings = out.warnings;
        set.tokens = tokens;
        set.token_gates = token_gates;
        set.token_by_hash = token_by_hash;
        set.token_files = records;
        Ok(set)
    }
}

impl<'a> TokenSink<'a> {
    /// Makes room for `additional` more tokens (their count estimated; a wrong guess costs only time or
    /// memory: the tables still grow as needed).
    pub fn reserve(&mut self, additional: usize) {
        let len = self.tokens.len();
        let needed = len.saturating_add(additional);
        if needed <= self.tokens.capacity() {
            return;
        }
        // A little more than asked: an estimate that creeps up then does not copy the tables each time.
        let additional = needed.saturating_add(needed / 32) - len;
        self.tokens.reserve_exact(additional);
        self.token_gates.reserve_exact(additional);
        self.token_by_hash.reserve(additional);
        self.kept_origins.reserve_exact(additional);
        let tokens = &self.tokens;
        self.kept_ids
            .reserve(additional, |&position| id_hash(token_id(tokens, position)));
    }

    /// Adds one file's tokens (batches in file order): each is kept when it compiled and its id and secret
    /// hash are the first of their kind.
    pub fn add(&mut self, compiler: &Compiler<'a>, batch: TokenBatch<'a>) {
        let TokenBatch {
            file,
            mut tokens,
            out,
        } = batch;
        let start = self.tokens.len() as u32;
        let warnings = out.warnings.clone();
        let mut used_groups = out.used_groups.clone();
        used_groups.sort_unstable();
        used_groups.dedup();
        let keysets = self.out.absorb(out);
        for token in tokens.drain(..) {
            let id = match (&token.id, &token.compiled) {
                (Some(id), _) => Some(&**id),
                (None, Some((compiled, _))) => Some(&*compiled.id),
                (None, None) => None,
            };
            let id_ok = id.is_some_and(|id| {
                let first = self.first_with_id(id);
                self.report_duplicate(first, format_args!("token {id:?}"), "id", file, token.index)
            });
            let secret_ok = token.secret.is_some_and(|secret| {
                let first = self.first_with_secret(&secret);
                let what = format_args!("token secret hash");
                self.report_duplicate(first, what, "secret_sha256", file, token.index)
            });
            let origin = (file, token.index);
            if !(id_ok && secret_ok && token.compiled.is_some() && token.secret.is_some()) {
                // Not kept, but the first of its id or secret hash all the same.
                if let (Some(id), true) = (id, id_ok) {
                    self.other_ids.insert(id.into(), origin);
                }
                if let (Some(secret), true) = (token.secret, secret_ok) {
                    self.other_secrets.insert(secret, origin);
                }
                continue;
            }
            // Both are there (checked just above).
            let (Some((compiled, mut policies)), Some(secret)) = (token.compiled, token.secret)
            else {
                continue;
            };
            // The batch's policies are its own (one reference): renumbered in place.
            match Arc::get_mut(&mut policies) {
                Some(policies) => renumber_keysets(policies, &keysets),
                None => {
                    let mut copy = policies.to_vec();
                    renumber_keysets(&mut copy, &keysets);
                    policies = Arc::from(copy);
                }
            }
            let position = self.tokens.len() as u32;
            let tokens = &self.tokens;
            self.kept_ids
                .insert_unique(id_hash(&compiled.id), position, |&kept| {
                    id_hash(token_id(tokens, kept))
                });
            self.kept_origins.push(origin);
            let gate = TokenGate {
                owner: compiled.owner,
                status: compiled.status,
                has_ip_condition: compiled.ip_condition.is_some(),
                valid_from: compiled.not_before.as_ref().map_or(i64::MIN, |(at, _)| *at),
                valid_until: compiled.expires_on.as_ref().map_or(i64::MAX, |(at, _)| *at),
                owner_id: self.owner_id(compiler, compiled.owner),
                policies,
            };
            self.token_by_hash.insert(secret, position);
            self.tokens.push(compiled);
            self.token_gates.push(gate);
        }
        self.records.push(TokenFileRecord {
            file: file.to_path_buf(),
            tokens: start..self.tokens.len() as u32,
            used_groups: used_groups.into_boxed_slice(),
            warnings,
        });
        let mut spare = compiler
            .spare_lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One list per batch in flight is all that is ever waiting for reuse.
        if spare.len() < 16 {
            spare.push(tokens);
        }
    }

    /// Adds one file's tokens as `previous` compiled them, shared with it, instead of compiling the file
    /// again: for a reload in which this file, the entities and the routes are unchanged (so the compiled
    /// tokens are what compiling the file would give), only other token files changed. `record` is the file's
    /// record in `previous`, `secrets` the secret hash of each of `previous`'s tokens by position. This
    /// compile must have been resumed from `previous` ([`Compiler::resume`]), so that `previous`'s key-set
    /// numbers are its numbers too. The cross-file checks (ids, secret hashes) run exactly as for a compiled
    /// batch, so the errors are those of a full compile, and the decisions too.
    pub fn add_reused(
        &mut self,
        compiler: &Compiler<'a>,
        file: &'a Path,
        previous: &PolicySet,
        record: &TokenFileRecord,
        secrets: &[[u8; 32]],
    ) {
        let start = self.tokens.len() as u32;
        self.out.warnings.extend(record.warnings.iter().cloned());
        self.out
            .used_groups
            .extend(record.used_groups.iter().copied());
        let range = record.tokens.start as usize..record.tokens.end as usize;
        let (Some(tokens), Some(gates), Some(secrets)) = (
            previous.tokens.get(range.clone()),
            previous.token_gates.get(range.clone()),
            secrets.get(range),
        ) else {
            self.out.error(
                file,
                "tokens",
                ErrorKind::Internal,
                "internal error: the previous compile's tokens of this file are missing",
            );
            return;
        };
        for (index, ((token, gate), secret)) in tokens.iter().zip(gates).zip(secrets).enumerate() {
            let id = &*token.id;
            let id_ok = {
                let first = self.first_with_id(id);
                self.report_duplicate(first, format_args!("token {id:?}"), "id", file, index)
            };
            let secret_ok = {
                let first = self.first_with_secret(secret);
                let what = format_args!("token secret hash");
                self.report_duplicate(first, what, "secret_sha256", file, index)
            };
            let origin = (file, index);
            if !(id_ok && secret_ok) {
                if id_ok {
                    self.other_ids.insert(id.into(), origin);
                }
                if secret_ok {
                    self.other_secrets.insert(*secret, origin);
                }
                continue;
            }
            let position = self.tokens.len() as u32;
            let kept = &self.tokens;
            self.kept_ids
                .insert_unique(id_hash(id), position, |&kept_at| {
                    id_hash(token_id(kept, kept_at))
                });
            self.kept_origins.push(origin);
            self.token_by_hash.insert(*secret, position);
            let owner_id = self.owner_id(compiler, gate.owner);
            self.token_gates.push(TokenGate {
                owner_id,
                ..gate.clone()
            });
            self.tokens.push(Arc::clone(token));
        }
        self.records.push(TokenFileRecord {
            file: file.to_path_buf(),
            tokens: start..self.tokens.len() as u32,
            used_groups: record.used_groups.clone(),
            warnings: record.warnings.clone(),
        });
    }

    /// Where the first token with this id was defined, if one was.
    fn first_with_id(&self, id: &str) -> Option<TokenOrigin<'a>> {
        let tokens = &self.tokens;
        match self
            .kept_ids
            .find(id_hash(id), |&kept| token_id(tokens, kept) == id)
        {
            Some(&kept) => self.kept_origins.get(kept as usize).copied(),
            None => self.other_ids.get(id).copied(),
        }
    }

    /// Where the first token with this secret hash was defined, if one was (the hash is never shown).
    fn first_with_secret(&self, secret: &[u8; 32]) -> Option<TokenOrigin<'a>> {
        match self.token_by_hash.get(secret) {
            Some(&kept) => self.kept_origins.get(kept as usize).copied(),
            None => self.other_secrets.get(secret).copied(),
        }
    }

    /// `true` when `first` is `None`; otherwise an error at `tokens[index].field` naming the first one
    /// (`what` is formatted only then).
    fn report_duplicate(
        &mut self,
        first: Option<TokenOrigin<'a>>,
        what: fmt::Arguments<'_>,
        field: &str,
        file: &Path,
        index: usize,
    ) -> bool {
        let Some((first_file, first_index)) = first else {
            return true;
        };
        let message = format!(
            "duplicate {what} (first defined at {}: tokens[{first_index}].{field})",
            first_file.display()
        );
        self.out.error(
            file,
            format_args!("tokens[{index}].{field}"),
            ErrorKind::Duplicate,
            message,
        );
        false
    }

    /// The id of a token's owner, one shared copy per owner.
    fn owner_id(&mut self, compiler: &Compiler<'a>, owner: Owner) -> Arc<str> {
        let set = &compiler.set;
        self.owner_ids
            .entry(owner)
            .or_insert_with(|| {
                let id = match owner {
                    Owner::User(user) => set.users.get(user as usize).map(|user| &*user.id),
                    Owner::Account(account) => set
                        .accounts
                        .get(account as usize)
                        .map(|account| &*account.id),
                };
                // Owners come from the user and account indexes, so the record exists.
                Arc::from(id.unwrap_or(""))
            })
            .clone()
    }
}

/// The hash of a token id in [`TokenSink`]'s table of kept ids.
fn id_hash(id: &str) -> u64 {
    use std::hash::BuildHasher as _;
    rustc_hash::FxBuildHasher.hash_one(id)
}

/// The id of kept token `position`.
fn token_id(tokens: &[Arc<Token>], position: u32) -> &str {
    tokens.get(position as usize).map_or("", |token| &token.id)
}

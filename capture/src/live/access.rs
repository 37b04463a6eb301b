//! Who may read the map: `smap watch --auth kubernetes` asks the Kubernetes API about
//! each request's bearer token, as kube-rbac-proxy does; `--auth token-file` compares it
//! with the tokens of a file, for clusters without those reviews. A TokenReview says who the
//! token belongs to; a SubjectAccessReview says whether that user may `get` the
//! request's path (a non-resource URL, granted by RBAC like `/map`). Answers are cached
//! for a minute per token and path, so a browser polling every two seconds costs the
//! API server two reviews a minute.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::Api;

use crate::k8s_api::{K8sApiError, KubeOptions};

/// How long an answer of the API server is reused.
const CACHE_FOR: Duration = Duration::from_secs(60);

/// Answers kept at most: past it the cache starts over (a client inventing tokens
/// cannot grow it without bound).
const CACHE_MAX: usize = 4096;

/// What the API server said of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The token's user may read the path.
    Allowed,
    /// No token, or one the API server does not know: 401.
    Unauthenticated,
    /// A known user without the right to the path: 403.
    Forbidden,
    /// The API server could not be asked: 503, never an open door.
    Unavailable,
}

/// Who may read the map.
pub enum Access {
    /// Tokens the Kubernetes API authenticates and authorizes for the path.
    Kubernetes(KubeAccess),
    /// The tokens of a file, each allowed every restricted path.
    Tokens(TokenFile),
}

impl Access {
    /// Whether `token` may `get` `path`.
    pub async fn check(&self, token: Option<&str>, path: &str) -> Verdict {
        match self {
            Access::Kubernetes(kube) => kube.check(token, path).await,
            Access::Tokens(file) => file.check(token),
        }
    }
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// It could not be read.
    #[error("reading the token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It holds no token: every request would be refused.
    #[error("the token file {path} holds no token")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Bearer tokens read once from a file: one per line, blank lines and `#` comments
/// skipped (a mounted Secret, say; the agent reads it at start).
pub struct TokenFile {
    tokens: Vec<String>,
}

impl TokenFile {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self, TokenFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| TokenFileError::Read { path: path.to_owned(), source })?;
        let tokens: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned)
            .collect();
        if tokens.is_empty() {
            return Err(TokenFileError::Empty { path: path.to_owned() });
        }
        Ok(TokenFile { tokens })
    }

    fn check(&self, token: Option<&str>) -> Verdict {
        let Some(token) = token else { return Verdict::Unauthenticated };
        // Every token compared, each in time independent of where it differs.
        let known = self.tokens.iter().fold(false, |found, t| found | same_bytes(t.as_bytes(), token.as_bytes()));
        if known {
            Verdict::Allowed
        } else {
            Verdict::Unauthenticated
        }
    }
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Checks bearer tokens against the Kubernetes API.
pub struct KubeAccess {
    client: kube::Client,
    /// Keyed per process: a client cannot craft a token that hashes like another's.
    hasher: RandomState,
    cache: Mutex<HashMap<(u64, String), (Instant, Verdict)>>,
    /// Whether the last review failed: failures are logged when they start, not per
    /// request.
    failing: AtomicBool,
}

impl KubeAccess {
    /// Checks with this client's credentials (the agent's service account needs
    /// `create` on tokenreviews and subjectaccessreviews).
    pub fn new(client: kube::Client) -> Self {
        KubeAccess {
            client,
            hasher: RandomState::new(),
            cache: Mutex::new(HashMap::new()),
            failing: AtomicBool::new(false),
        }
    }

    /// Checks with the credentials `options` find (as `--k8s-api` finds them).
    pub async fn connect(options: &KubeOptions) -> Result<Self, K8sApiError> {
        let config = options.client_config().await?;
        let client = kube::Client::try_from(config).map_err(K8sApiError::Client)?;
        Ok(Self::new(client))
    }

    /// Whether `token` may `get` `path`.
    pub async fn check(&self, token: Option<&str>, path: &str) -> Verdict {
        let Some(token) = token.filter(|t| !t.is_empty()) else { return Verdict::Unauthenticated };
        // A hash, so the cache never holds a token itself.
        let key = (self.hasher.hash_one(token), path.to_owned());
        if let Some(verdict) = self.cached(&key) {
            return verdict;
        }
        let verdict = match self.ask(token, path).await {
            Ok(verdict) => {
                self.failing.store(false, Ordering::Relaxed);
                verdict
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "asking the Kubernetes API about a token failed, refusing requests until it answers: {error}"
                    );
                }
                Verdict::Unavailable
            }
        };
        // A failure to ask is not remembered: the next request asks again.
        if verdict != Verdict::Unavailable {
            let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), verdict));
        }
        verdict
    }

    fn cached(&self, key: &(u64, String)) -> Option<Verdict> {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(key).filter(|(at, _)| at.elapsed() < CACHE_FOR).map(|(_, verdict)| *verdict)
    }

    async fn ask(&self, token: &str, path: &str) -> Result<Verdict, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_owned()), ..TokenReviewSpec::default() },
            ..TokenReview::default()
        };
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let status = reviews.create(&PostParams::default(), &review).await?.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Ok(Verdict::Unauthenticated);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_owned()),
                    verb: Some("get".to_owned()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let accesses: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let reviewed = accesses.create(&PostParams::default(), &access).await?;
        Ok(if reviewed.status.is_some_and(|s| s.allowed) { Verdict::Allowed } else { Verdict::Forbidden })
    }
}

//! What every request reads, from one generation, in one value: the snapshot, the upstream client built for
//! its settings, the upstream's own credential, the inbound certificate and the metrics' per-route series.
//!
//! The gateway holds the serving [`Live`] in one `ArcSwap`; the reloader builds the next one whole (reusing
//! the upstream client when its settings did not change) and stores it once, so a request, which loads it
//! once, never sees one generation's snapshot with another's upstream client or route series, and a TLS
//! handshake never sees a certificate ahead of or behind the config it belongs to.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::error::ProxyError;
use super::upstream::UpstreamClient;
use super::upstream_auth::UpstreamCredential;
use crate::metrics::{Metrics, RouteSeriesTable};
use crate::snapshot::Snapshot;

/// Everything a request reads, of one generation.
pub struct Live {
    /// The config: settings, routes, policy.
    pub snapshot: Arc<Snapshot>,
    /// The upstream clients, built for `snapshot.settings.upstream` (shared with the generations before
    /// when those settings did not change, so their idle connections are kept).
    pub upstream: Arc<UpstreamClient>,
    /// The upstream's own credential (`upstream.auth`), read when this generation was built (a reload that
    /// could not read it keeps the previous one); `None` without `upstream.auth`.
    pub upstream_credential: Option<Arc<UpstreamCredential>>,
    /// The inbound certificate, when the proxy listener speaks TLS.
    pub certificate: Option<Arc<CertifiedKey>>,
    /// The per-route metric series of `snapshot`'s routes (same index as its route table).
    pub route_series: RouteSeriesTable,
}

// === impl Live ===

impl Live {
    /// The first generation: upstream clients built from `snapshot`'s settings, its credential read.
    pub fn first(
        snapshot: Arc<Snapshot>,
        certificate: Option<Arc<CertifiedKey>>,
        metrics: &Metrics,
    ) -> Result<Self, ProxyError> {
        let settings = &snapshot.settings.upstream;
        let upstream = Arc::new(UpstreamClient::new(settings)?);
        let upstream_credential = match &settings.auth {
            Some(source) => Some(Arc::new(UpstreamCredential::read(source)?)),
            None => None,
        };
        Ok(Self {
            route_series: metrics.route_series(&snapshot),
            snapshot,
            upstream,
            upstream_credential,
            certificate,
        })
    }

    /// The upstream clients for `snapshot`: these ones when they were built for its settings, else new ones
    /// (a new URL gets a new pool of connections). Reads the CA file when it builds; call it off the request
    /// path.
    pub fn upstream_for(&self, snapshot: &Snapshot) -> Result<Arc<UpstreamClient>, ProxyError> {
        let settings = &snapshot.settings.upstream;
        if self.upstream.is_built_for(settings) {
            Ok(Arc::clone(&self.upstream))
        } else {
            UpstreamClient::new(settings).map(Arc::new)
        }
    }

    /// The generation after this one: `snapshot` with `upstream` (from [`Live::upstream_for`]), the new
    /// certificate if it was rotated (else this one's), fresh route series, and the upstream credential read
    /// again (a rotated secret applies with the reload). When the credential cannot be read, this one's stays
    /// and the error is returned beside the new generation; without `upstream.auth` there is none.
    pub fn next(
        &self,
        snapshot: Arc<Snapshot>,
        upstream: Arc<UpstreamClient>,
        rotated_certificate: Option<Arc<CertifiedKey>>,
        metrics: &Metrics,
    ) -> (Self, Option<ProxyError>) {
        let (upstream_credential, error) = match &snapshot.settings.upstream.auth {
            None => (None, None),
            Some(source) => match UpstreamCredential::read(source) {
                Ok(credential) => (Some(Arc::new(credential)), None),
                Err(error) => (self.upstream_credential.clone(), Some(error.into())),
            },
        };
        let live = Self {
            route_series: metrics.route_series(&snapshot),
            snapshot,
            upstream,
            upstream_credential,
            certificate: rotated_certificate.or_else(|| self.certificate.clone()),
        };
        (live, error)
    }
}

impl fmt::Debug for Live {
    // `CertifiedKey` holds the private key: never format it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("snapshot", &self.snapshot)
            .field("upstream", &self.upstream)
            .field("upstream_credential", &self.upstream_credential)
            .field(
                "certificate_chain_len",
                &self.certificate.as_ref().map(|key| key.cert.len()),
            )
            .field("route_series", &self.route_series)
            .finish()
    }
}

/// The inbound TLS certificate resolver: every handshake gets the certificate of the serving [`Live`].
pub struct LiveCertificate {
    live: Arc<ArcSwap<Live>>,
}

impl LiveCertificate {
    pub(super) fn new(live: Arc<ArcSwap<Live>>) -> Self {
        Self { live }
    }
}

impl fmt::Debug for LiveCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveCertificate").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for LiveCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.live.load().certificate.clone()
    }
}

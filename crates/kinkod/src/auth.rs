//! Authentication: who is calling (from the client certificate) and whether the role allows the
//! call. A certificate proves identity only; approvals additionally need the officer's own
//! Ed25519 signature, so a stolen certificate alone cannot approve.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use tonic::{Request, Status};

use crate::config::{PrincipalConfig, Role};
use crate::rate::Bucket;
use crate::status::{Reason, status};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// The principal name (a requester or officer id of the policy).
    pub(crate) name: String,
    /// Its roles.
    pub(crate) roles: Vec<Role>,
}

/// Pinned certificates → principals, and each principal's call rate.
#[derive(Debug, Default)]
pub(crate) struct Principals {
    /// The pins and the revocation list; replaced whole by a reload (SIGHUP).
    pins: std::sync::RwLock<Arc<Pins>>,
    /// Calls per second per principal (0: unlimited) and the burst allowed.
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Pinned certificates and revoked ones, as the configuration lists them.
#[derive(Debug, Default)]
struct Pins {
    /// SHA-256 of a certificate's DER (lowercase hex) → the principal and the common name it
    /// must carry.
    by_fingerprint: HashMap<String, (String, Principal)>,
    /// Common names of configured principals (to say why an unpinned certificate is refused).
    cns: HashMap<String, String>,
    /// Revoked certificates (SHA-256 of the DER, lowercase hex).
    revoked: std::collections::HashSet<String>,
}

impl Pins {
    fn new(list: &[PrincipalConfig], revoked: &[String]) -> Pins {
        let mut by_fingerprint = HashMap::new();
        let mut cns = HashMap::new();
        for p in list {
            cns.insert(p.certificate_cn.clone(), p.name.clone());
            for f in &p.certificate_sha256 {
                by_fingerprint.insert(
                    f.to_ascii_lowercase(),
                    (
                        p.certificate_cn.clone(),
                        Principal {
                            name: p.name.clone(),
                            roles: p.roles.clone(),
                        },
                    ),
                );
            }
        }
        Pins {
            by_fingerprint,
            cns,
            revoked: revoked.iter().map(|f| f.to_ascii_lowercase()).collect(),
        }
    }
}

impl Principals {
    /// Replaces the pinned certificates and the revocation list (a reload): every later call,
    /// on new connections and on connections already open, is identified with the new ones.
    pub(crate) fn reload(&self, list: &[PrincipalConfig], revoked: &[String]) {
        let pins = Arc::new(Pins::new(list, revoked));
        match self.pins.write() {
            Ok(mut p) => *p = pins,
            Err(poisoned) => *poisoned.into_inner() = pins,
        }
    }

    fn pins(&self) -> Arc<Pins> {
        match self.pins.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// With a per-principal rate limit of `rate` calls per second (bursts of `burst`).
    pub(crate) fn with_rate_limit(
        mut self,
        rate: f64,
        burst: f64,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        self.rate = rate;
        self.burst = burst.max(1.0);
        self.metrics = Some(metrics);
        self
    }

    /// Takes one token from `name`'s bucket.
    fn admit(&self, name: &str) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return false;
        };
        buckets
            .entry(name.to_string())
            .or_insert_with(|| Bucket::full(self.burst))
            .take(self.rate, self.burst)
    }

    /// The principal a verified certificate chain maps to.
    pub(crate) fn by_certificates(&self, certs: &[CertificateDer<'static>]) -> Option<Principal> {
        self.identify(certs).ok()
    }

    /// Identifies the leaf certificate: it must be pinned to a principal (by the SHA-256 of its
    /// DER), carry that principal's common name, and not be revoked.
    pub(crate) fn identify(&self, certs: &[CertificateDer<'static>]) -> Result<Principal, String> {
        let leaf = certs.first().ok_or("a client certificate is required")?;
        let fingerprint = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(leaf.as_ref()))
        };
        let pins = self.pins();
        if pins.revoked.contains(&fingerprint) {
            return Err(format!("certificate {fingerprint} is revoked"));
        }
        let cn = crate::tls::peer_common_name(certs).unwrap_or_default();
        match pins.by_fingerprint.get(&fingerprint) {
            Some((want_cn, p)) if *want_cn == cn => Ok(p.clone()),
            Some((want_cn, p)) => Err(format!(
                "certificate {fingerprint} is pinned to {} but names {cn:?}, not {want_cn:?}",
                p.name
            )),
            None => Err(match pins.cns.get(&cn) {
                Some(name) => format!(
                    "certificate {fingerprint} names {cn:?} but is not a pinned certificate of principal {name}"
                ),
                None => format!(
                    "certificate {fingerprint} ({cn:?}) is not pinned to a principal in the daemon's config"
                ),
            }),
        }
    }

    pub(crate) fn new(list: &[PrincipalConfig], revoked: &[String]) -> Self {
        Principals {
            pins: std::sync::RwLock::new(Arc::new(Pins::new(list, revoked))),
            ..Default::default()
        }
    }

    /// The caller of `req`, whatever its roles — except a principal that may only scrape
    /// metrics, which reads nothing through the API.
    pub(crate) fn authorize_any<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let certs = req
            .peer_certs()
            .ok_or_else(|| status(Reason::Unauthenticated, "a client certificate is required"))?;
        let p = self
            .identify(&certs)
            .map_err(|e| status(Reason::Unauthenticated, &e))?;
        if p.roles.iter().all(|r| *r == Role::Metrics) {
            return Err(status(
                Reason::RoleRequired,
                &format!("principal {} may only scrape metrics", p.name),
            ));
        }
        if !self.admit(&p.name) {
            if let Some(m) = &self.metrics {
                m.rate_limited.inc();
            }
            return Err(status(
                Reason::RateLimited,
                &format!(
                    "{} exceeds {} calls per second; slow down and retry",
                    p.name, self.rate
                ),
            ));
        }
        Ok(p)
    }

    /// The caller of `req`, if it holds `role`.
    pub(crate) fn authorize<T>(&self, req: &Request<T>, role: Role) -> Result<Principal, Status> {
        let p = self.authorize_any(req)?;
        if !p.roles.contains(&role) {
            return Err(status(
                Reason::RoleRequired,
                &format!("principal {} lacks the {role:?} role for this call", p.name),
            ));
        }
        Ok(p)
    }
}

//! Authentication: who is calling (from the client certificate) and whether the role allows the
//! call. A certificate proves identity only; approvals additionally need the officer's own
//! Ed25519 signature, so a stolen certificate alone cannot approve.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use tonic::{Request, Status};

use crate::config::{PrincipalConfig, Role};
use crate::status::{Reason, status};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// The principal name (a requester or officer id of the policy).
    pub(crate) name: String,
    /// Its roles.
    pub(crate) roles: Vec<Role>,
}

/// A token bucket: `rate` calls per second on average, bursts up to `burst`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Certificate common names → principals, and each principal's call rate.
#[derive(Debug, Default)]
pub(crate) struct Principals {
    by_cn: HashMap<String, Principal>,
    /// Calls per second per principal (0: unlimited) and the burst allowed.
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Principals {
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
        let now = Instant::now();
        let b = buckets.entry(name.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The principal a verified certificate chain maps to.
    pub(crate) fn by_certificates(&self, certs: &[CertificateDer<'static>]) -> Option<Principal> {
        let cn = crate::tls::peer_common_name(certs)?;
        self.by_cn.get(&cn).cloned()
    }

    pub(crate) fn new(list: &[PrincipalConfig]) -> Self {
        Principals {
            by_cn: list
                .iter()
                .map(|p| {
                    (
                        p.certificate_cn.clone(),
                        Principal {
                            name: p.name.clone(),
                            roles: p.roles.clone(),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The caller of `req`, whatever its roles.
    pub(crate) fn authorize_any<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let certs = req
            .peer_certs()
            .ok_or_else(|| status(Reason::Unauthenticated, "a client certificate is required"))?;
        let cn = crate::tls::peer_common_name(&certs).ok_or_else(|| {
            status(
                Reason::Unauthenticated,
                "the client certificate has no subject common name",
            )
        })?;
        let p = self.by_cn.get(&cn).cloned().ok_or_else(|| {
            status(
                Reason::Unauthenticated,
                &format!("certificate {cn:?} is not mapped to a principal in the daemon's config"),
            )
        })?;
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

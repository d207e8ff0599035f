//! Authentication: who is calling (from the client certificate) and whether the role allows the
//! call. A certificate proves identity only; approvals additionally need the officer's own
//! Ed25519 signature, so a stolen certificate alone cannot approve.

use std::collections::HashMap;

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

/// Certificate common names → principals.
#[derive(Debug, Clone, Default)]
pub(crate) struct Principals {
    by_cn: HashMap<String, Principal>,
}

impl Principals {
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
        self.by_cn.get(&cn).cloned().ok_or_else(|| {
            status(
                Reason::Unauthenticated,
                &format!("certificate {cn:?} is not mapped to a principal in the daemon's config"),
            )
        })
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
